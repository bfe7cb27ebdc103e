"""The cloud side's stories against a real kedge-cloud-api on a simulated master: a
tainted single master, a NAT advertise address, an unsupported Kubernetes, a keadm of
the wrong architecture, init twice, a pod that cannot be scheduled, reset."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.harness.master import MASTER_IP, Master, master
from tests.harness.wait import wait_for
from tests.kubeedge_sim import sim

pytestmark = pytest.mark.netns
MASTER_TAINTS = "node-role.kubernetes.io/control-plane, node-role.kubernetes.io/master"


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Master]:
    with master(tmp_path) as m:
        m.root.write(
            "/var/lib/kedge-sim/keadm.json", json.dumps({"version": "v1.13.0", "init_wait_s": 1})
        )
        yield m.start()


def test_tainted_single_master_gets_tolerations_and_cloudcore_serves(cloud: Master) -> None:
    out = cloud.cli("init", "--advertise-address", MASTER_IP)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"installing cloudcore v1.13.0 advertising {MASTER_IP}" in out.stdout
    assert f"cloudcore gets tolerations for {MASTER_TAINTS}" in out.stdout
    assert "--profile version=v1.13.0" in out.stdout
    assert out.stdout.rstrip().endswith("✓ done")
    status, body = cloud.call("GET", "/api/v1/cloudcore")
    assert status == 200
    assert body == {
        "installed": True,
        "version": "v1.13.0",
        "image": "kubeedge/cloudcore:v1.13.0",
        "node": "master",
        "pod_phase": "Running",
        "available": True,
        "advertise_addresses": [MASTER_IP],
        "ports": {f"{MASTER_IP}:10000": True, f"{MASTER_IP}:10002": True},
        "managed": True,
    }
    human = cloud.cli("status")
    assert human.stdout.splitlines()[0] == (
        "cloudcore: v1.13.0 (kubeedge/cloudcore:v1.13.0) on node master, pod Running, Available"
    )


def test_init_twice_is_a_no_op_and_a_new_version_is_an_upgrade(cloud: Master) -> None:
    assert cloud.cli("init", "--advertise-address", MASTER_IP).returncode == 0
    again = cloud.cli("init", "--advertise-address", MASTER_IP)
    assert (again.returncode, again.stdout.strip()) == (
        0,
        f"cloudcore v1.13.0 is already installed on master and available at {MASTER_IP}: nothing to do",
    )
    upgrade = cloud.cli("init", "--advertise-address", MASTER_IP, "--kubeedge-version", "v1.13.1")
    assert upgrade.returncode == 0, upgrade.stdout + upgrade.stderr
    assert f"upgrading cloudcore v1.13.0 to v1.13.1 advertising {MASTER_IP}" in upgrade.stdout
    assert "--force" in upgrade.stdout
    _, body = cloud.call("GET", "/api/v1/cloudcore")
    assert (body["version"], body["available"], all(body["ports"].values())) == (
        "v1.13.1",
        True,
        True,
    )


def test_advertise_address_not_on_this_host_is_refused_naming_the_hosts_addresses(
    cloud: Master,
) -> None:
    status, body = cloud.call("POST", "/api/v1/cloudcore", {"advertise_address": ["10.0.2.15"]})
    assert status == 422
    assert body["error"]["code"] == "refused"
    assert body["error"]["message"].startswith(
        "advertise address 10.0.2.15 is not on any interface of this host"
    )
    assert body["error"]["details"] == {"host_addresses": [MASTER_IP]}
    out = cloud.cli("init", "--advertise-address", "127.0.0.1")
    assert out.returncode == 2
    assert out.stderr.splitlines() == [
        "kedge-cloud-api: error: advertise address 127.0.0.1 is loopback: edge boards cannot reach it",
        f"  host_addresses: ['{MASTER_IP}']",
    ]
    assert "kubeedge" not in cloud.cluster()["namespaces"]


def test_unsupported_kubernetes_is_refused_with_the_supported_range(cloud: Master) -> None:
    cloud.edit_cluster(version="v1.27.3")
    out = cloud.cli("init", "--advertise-address", MASTER_IP)
    assert out.returncode == 2
    assert out.stderr.splitlines()[0] == (
        "kedge-cloud-api: error: Kubernetes 1.27 is outside KubeEdge v1.13.0's supported range 1.20 to 1.23; "
        "pick a matching KubeEdge version or pass allow_unsupported_kubernetes"
    )
    status, body = cloud.call(
        "POST",
        "/api/v1/cloudcore",
        {"advertise_address": MASTER_IP, "allow_unsupported_kubernetes": True},
    )
    assert status == 202, body
    assert cloud.wait_job(body["job"]["id"])["state"] == "succeeded"


def test_keadm_of_the_wrong_architecture_is_refused(cloud: Master) -> None:
    other = "amd64" if os.uname().machine == "aarch64" else "arm64"
    here = "arm64" if other == "amd64" else "amd64"
    cloud.root.install_elf("/usr/local/bin/keadm", other)
    status, body = cloud.call("POST", "/api/v1/cloudcore", {"advertise_address": [MASTER_IP]})
    assert (status, body["error"]["message"]) == (
        422,
        f"keadm is built for {other} but this host is {here}",
    )


def test_a_pod_that_cannot_be_scheduled_ends_with_the_schedulers_reason(cloud: Master) -> None:
    node = cloud.cluster()["nodes"][0]
    node["taints"].append({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"})
    cloud.edit_cluster(nodes=[node])
    out = cloud.cli("init", "--advertise-address", MASTER_IP)
    assert out.returncode == 1
    last = out.stdout.rstrip().splitlines()[-1]
    assert last == (
        "✗ keadm init failed (exit 1): FailedScheduling: 0/1 nodes are available: 1 node(s) had taint "
        "{dedicated: gpu}, that the pod didn't tolerate."
    )


def test_an_image_that_cannot_be_pulled_ends_with_the_kubelets_reason(cloud: Master) -> None:
    out = cloud.cli("init", "--advertise-address", MASTER_IP, "--kubeedge-version", "v1.13.9")
    assert out.returncode == 1
    assert out.stdout.rstrip().splitlines()[-1] == (
        '✗ keadm init failed (exit 1): Failed: Failed to pull image "kubeedge/cloudcore:v1.13.9": rpc error: '
        "code = Unknown desc = Error response from daemon: manifest for kubeedge/cloudcore:v1.13.9 not found: "
        "manifest unknown: manifest unknown"
    )


def test_one_job_at_a_time(cloud: Master) -> None:
    cloud.root.write(
        "/var/lib/kedge-sim/keadm.json", json.dumps({"version": "v1.13.0", "init_wait_s": 5})
    )
    node = cloud.cluster()["nodes"][0]
    node["taints"].append({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"})
    cloud.edit_cluster(nodes=[node])
    status, first = cloud.call("POST", "/api/v1/cloudcore", {"advertise_address": [MASTER_IP]})
    assert status == 202
    status, second = cloud.call("DELETE", "/api/v1/cloudcore")
    assert (status, second["error"]["code"]) == (409, "busy")
    assert second["error"]["details"] == {"job": first["job"]["id"]}
    assert cloud.wait_job(first["job"]["id"])["state"] == "failed"


def test_token_and_reset(cloud: Master) -> None:
    status, body = cloud.call("GET", "/api/v1/cloudcore/token")
    assert (status, body["error"]["code"]) == (409, "no_cloudcore")
    assert cloud.cli("init", "--advertise-address", MASTER_IP).returncode == 0
    out = cloud.cli("token")
    token = out.stdout.strip()
    assert len(token.split(".")) == 4
    assert out.stderr.startswith("expires 20")
    reset = cloud.cli("reset", "--yes")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert "namespace kubeedge is gone" in reset.stdout
    assert "kubeedge" not in cloud.cluster()["namespaces"]
    assert sim.programs_running("cloudcore") == []
    assert cloud.cli("status").stdout == "cloudcore: not installed\n"
    again = cloud.cli("reset", "--yes")
    assert (again.returncode, again.stdout) == (
        0,
        "cloudcore is not installed (no namespace kubeedge): nothing to do\n",
    )
    cloud.stop()
    log = cloud.log.read_text()
    assert token.split(".")[1] not in log
    assert cloud.token not in log


def _keadm_init_running() -> list[int]:
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "keadm" in cmd and " init" in cmd and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(p.info["pid"])
    return found


@pytest.mark.faults
def test_a_killed_service_leaves_no_keadm_and_reports_the_job_interrupted(cloud: Master) -> None:
    cloud.root.write(
        "/var/lib/kedge-sim/keadm.json", json.dumps({"version": "v1.13.0", "init_wait_s": 120})
    )
    node = cloud.cluster()["nodes"][0]
    untainted = json.loads(json.dumps(node))
    node["taints"].append({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"})
    cloud.edit_cluster(nodes=[node])
    status, first = cloud.call("POST", "/api/v1/cloudcore", {"advertise_address": [MASTER_IP]})
    assert status == 202
    wait_for(_keadm_init_running, timeout=30, what="keadm init waiting for the pod")
    assert cloud.proc is not None
    cloud.proc.send_signal(signal.SIGKILL)
    cloud.proc.wait(30)
    wait_for(lambda: not _keadm_init_running(), timeout=30, what="keadm to die with the service")
    cloud.start()
    status, job = cloud.call("GET", f"/api/v1/jobs/{first['job']['id']}")
    assert (status, job["state"]) == (200, "interrupted")
    assert job["error"]["message"].startswith("the service stopped or was killed")
    cloud.edit_cluster(nodes=[untainted])
    cloud.root.write(
        "/var/lib/kedge-sim/keadm.json", json.dumps({"version": "v1.13.0", "init_wait_s": 1})
    )
    status, again = cloud.call("POST", "/api/v1/cloudcore", {"advertise_address": [MASTER_IP]})
    assert status == 202, again
    assert cloud.wait_job(again["job"]["id"])["state"] == "succeeded"


def _served_addresses(address: str) -> list[str]:
    """The IP SANs of the certificate cloudcore serves on address:10002."""
    import socket
    import ssl

    from cryptography import x509

    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection((address, 10002), timeout=10) as raw,
        context.wrap_socket(raw) as tls,
    ):
        cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True) or b"")
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(a) for a in sans.get_values_for_type(x509.IPAddress)]


def test_a_new_advertise_address_really_reaches_the_certificate(cloud: Master) -> None:
    """cloudhub reuses Secret cloudcoresecret at every start and upgrade: keadm init with
    another address leaves the certificate of the first install. kedge-cloud-api deletes
    the secret and restarts cloudcore, so edges on the new address can verify it."""
    second = "198.18.0.3"
    cloud.ns.run("ip", "addr", "add", f"{second}/24", "dev", cloud.link).check_returncode()
    assert cloud.cli("init", "--advertise-address", MASTER_IP).returncode == 0
    assert _served_addresses(MASTER_IP) == [MASTER_IP]
    out = cloud.cli("init", "--advertise-address", f"{MASTER_IP},{second}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "deleted Secret kubeedge/cloudcoresecret" in out.stdout
    assert sorted(_served_addresses(second)) == sorted([MASTER_IP, second])


def test_keadm_init_alone_keeps_the_first_certificate(cloud: Master) -> None:
    """The simulator as the real cloudcore: the remedy "run keadm init again with the
    new address" does not change the certificate (PrepareAllCerts reads cloudcoresecret)."""
    import subprocess

    second = "198.18.0.3"
    cloud.ns.run("ip", "addr", "add", f"{second}/24", "dev", cloud.link).check_returncode()
    assert cloud.cli("init", "--advertise-address", MASTER_IP).returncode == 0
    keadm = str(cloud.root.path("/usr/local/bin/keadm"))
    again = subprocess.run(
        cloud.ns.argv(keadm, "init", f"--advertise-address={MASTER_IP},{second}", "--force",
                      f"--kube-config={cloud.kubeconfig}", "--profile", "version=v1.13.0",
                      "--set", "cloudCore.tolerations[0].key=node-role.kubernetes.io/control-plane",
                      "--set", "cloudCore.tolerations[0].operator=Exists",
                      "--set", "cloudCore.tolerations[0].effect=NoSchedule",
                      "--set", "cloudCore.tolerations[1].key=node-role.kubernetes.io/master",
                      "--set", "cloudCore.tolerations[1].operator=Exists",
                      "--set", "cloudCore.tolerations[1].effect=NoSchedule"),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    wait_for(lambda: _port_open(second), timeout=30, what="cloudcore on the new address")
    assert _served_addresses(second) == [MASTER_IP]  # edges there: "valid for A, not B"


def _port_open(address: str) -> bool:
    import socket

    try:
        socket.create_connection((address, 10002), timeout=1).close()
    except OSError:
        return False
    return True

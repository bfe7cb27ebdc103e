"""The cloud side's stories against a real kedge-cloud-api on a simulated master: a
tainted single master, a NAT advertise address, an unsupported Kubernetes, a keadm of
the wrong architecture, init twice, a pod that cannot be scheduled, reset."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.harness.master import MASTER_IP, Master, master
from tests.harness.wait import wait_for
from tests.kubeedge_sim import cluster, sim

pytestmark = pytest.mark.netns
RELEASE_V1 = "kubeedge/sh.helm.release.v1.cloudcore.v1"
MASTER_TAINTS = "node-role.kubernetes.io/control-plane, node-role.kubernetes.io/master"


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Master]:
    with master(tmp_path) as m:
        m.root.write(
            "/var/lib/kedge-sim/keadm.json", json.dumps({"version": "v1.13.0", "init_wait_s": 5})
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
        "advisory": None,  # v1.13.0 has no security advisory kedge knows of
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
    wait_for(lambda: RELEASE_V1 in cloud.cluster()["secrets"], timeout=30, what="helm's record")
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
        "/var/lib/kedge-sim/keadm.json", json.dumps({"version": "v1.13.0", "init_wait_s": 5})
    )
    # The killed keadm left Helm's record pending-install: Helm would refuse every
    # later init ("another operation … is in progress"); kedge clears it first.
    assert cloud.cluster()["secrets"][RELEASE_V1]["labels"]["status"] == "pending-install"
    status, again = cloud.call("POST", "/api/v1/cloudcore", {"advertise_address": [MASTER_IP]})
    assert status == 202, again
    done = cloud.wait_job(again["job"]["id"])
    assert done["state"] == "succeeded", done
    logged = "\n".join(entry["line"] for entry in done["lines"])
    assert (
        "revision 1 of Helm release cloudcore was left pending-install by a keadm init that did not "
        "finish, and Helm would refuse every later init: deleted its record, Secret "
        "kubeedge/sh.helm.release.v1.cloudcore.v1"
    ) in logged


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


def keadm_on_master(cloud: Master, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(cloud.root.path("/usr/local/bin/keadm")), *args, f"--kube-config={cloud.kubeconfig}"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_init_right_after_a_reset_waits_for_the_namespace_to_go(cloud: Master) -> None:
    """A namespace being deleted refuses Helm's release record ("… because it is being
    terminated"): kedge waits for it to go before running keadm init."""
    assert cloud.cli("init", "--advertise-address", MASTER_IP).returncode == 0
    cloud.edit_cluster(termination_s=3.0)
    assert keadm_on_master(cloud, "reset", "--force").returncode == 0  # by hand, not through kedge
    out = cloud.cli("init", "--advertise-address", MASTER_IP)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "waiting for namespace kubeedge to finish terminating" in out.stdout
    assert "namespace kubeedge is gone" in out.stdout


def test_a_master_without_room_for_cloudcore_is_refused_before_keadm(cloud: Master) -> None:
    node = cloud.cluster()["nodes"][0]
    node["allocatable"]["memory"] = "400Mi"
    cloud.edit_cluster(nodes=[node])
    status, body = cloud.call("POST", "/api/v1/cloudcore", {"advertise_address": [MASTER_IP]})
    assert (status, body["error"]["message"]) == (
        422,
        "no node has room for cloudcore's pod: the chart requests 100m CPU and 512Mi memory, and "
        "the nodes it may run on have allocatable master: 2 CPU, 400Mi memory. Free memory on the "
        "master (or give it more), or add a node",
    )
    assert "kubeedge" not in cloud.cluster()["namespaces"]


def test_a_slow_first_pull_outlasts_keadms_wait_and_init_still_succeeds(cloud: Master) -> None:
    cloud.edit_cluster(image_pull_s=8.0)  # keadm's Helm wait is 5 s here (60 s for real)
    out = cloud.cli("init", "--advertise-address", MASTER_IP)
    assert out.returncode == 0, out.stdout + out.stderr
    assert (
        "keadm's Helm wait (60 s from the install) ended while the kubelet was still pulling"
        in out.stdout
    )
    assert cloud.call("GET", "/api/v1/cloudcore")[1]["available"] is True


def test_a_crash_looping_cloudcore_is_named_with_its_last_words(
    cloud: Master, tmp_path: Path
) -> None:
    """cloudcore's pod uses the host's network: with cloudhub's port taken it exits at
    once and the kubelet restarts it (CrashLoopBackOff); keadm says only "timed out"."""
    with cloud.ns.listener(10000, tmp_path, host=MASTER_IP):
        out = cloud.cli("init", "--advertise-address", MASTER_IP)
    assert out.returncode == 1
    last = out.stdout.rstrip().splitlines()[-1]
    assert re.fullmatch(
        r"✗ keadm init failed \(exit 1\): cloudcore's pod keeps exiting \(CrashLoopBackOff, exit 1, "
        rf"\d+ restarts\); its last words: F\d{{4}} [\d:]+ server\.go:77\] listen tcp {MASTER_IP}:10000: "
        "bind: address already in use",
        last,
    ), last


def test_a_token_asked_for_right_after_install_waits_for_cloudcore_to_make_it(
    cloud: Master,
) -> None:
    cloud.edit_cluster(token_delay_s=3.0)
    assert cloud.cli("init", "--advertise-address", MASTER_IP).returncode == 0
    assert "kubeedge/tokensecret" not in cloud.cluster()["secrets"]  # the race, as on a real master
    out = cloud.cli("token")
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().split(".")) == 4


def test_status_names_the_advisory_of_a_cloudcore_installed_outside_kedge(cloud: Master) -> None:
    """Issue 26, item 8: kedge never installs v1.23.0, but a cloudcore someone else put
    there is named with its advisory and the release that fixes it."""
    assert cloud.cli("init", "--advertise-address", MASTER_IP).returncode == 0
    with cluster.update(str(cloud.kubeconfig)) as data:
        data["deployments"]["kubeedge/cloudcore"]["image"] = "kubeedge/cloudcore:v1.23.0"
    status, body = cloud.call("GET", "/api/v1/cloudcore")
    assert (status, body["version"]) == (200, "v1.23.0")
    assert "CVE-2026-62371 and CVE-2026-62182" in body["advisory"]
    assert body["advisory"].endswith("use v1.23.1, which fixes them")
    human = cloud.cli("status")
    assert human.returncode == 0, human.stdout + human.stderr
    assert "SECURITY: KubeEdge v1.23.0 has known security holes" in human.stdout
    refused = cloud.cli("init", "--advertise-address", MASTER_IP, "--kubeedge-version", "v1.23.0")
    assert refused.returncode != 0
    assert "use v1.23.1, which fixes them" in refused.stdout + refused.stderr

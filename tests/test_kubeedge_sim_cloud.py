"""keadm v1.13.0's cloud commands in the simulator: the traps the cloud API must avoid."""

from __future__ import annotations

import base64
import hashlib
import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.board import Board
from tests.harness.wait import wait_for
from tests.kubeedge_sim import cluster, helm, sim

TOLERATE_CONTROL_PLANE = [
    "--set", "cloudCore.tolerations[0].key=node-role.kubernetes.io/control-plane",
    "--set", "cloudCore.tolerations[0].operator=Exists",
    "--set", "cloudCore.tolerations[0].effect=NoSchedule",
    "--set", "cloudCore.tolerations[1].key=node-role.kubernetes.io/master",
    "--set", "cloudCore.tolerations[1].operator=Exists",
    "--set", "cloudCore.tolerations[1].effect=NoSchedule",
]  # fmt: skip


@pytest.fixture
def master(board: Board, tmp_path: Path) -> Iterator[tuple[Board, str]]:
    kubeconfig = tmp_path / "kube" / "config"
    kubeconfig.parent.mkdir()
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    board.write(
        "/var/lib/kedge-sim/keadm.json", json.dumps({"version": "v1.13.0", "init_wait_s": 3})
    )
    yield board, str(kubeconfig)
    with cluster.update(str(kubeconfig)) as data:
        cluster.stop_pod(data)


def keadm(board: Board, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(board.path("/usr/local/bin/keadm")), *args], capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def gettoken(board: Board, kubeconfig: str) -> str | None:
    out = keadm(board, "gettoken", f"--kube-config={kubeconfig}")
    return out.stdout.strip() if out.returncode == 0 else None


def test_tainted_single_master_times_out_with_the_scheduler_event(
    master: tuple[Board, str],
) -> None:
    board, kubeconfig = master
    out = keadm(board, "init", "--advertise-address=127.0.0.5", f"--kube-config={kubeconfig}",
                "--profile", "version=v1.13.0")  # fmt: skip
    assert out.returncode == 1
    assert "Error: timed out waiting for the condition" in out.stderr
    data = cluster.load(kubeconfig)
    assert data["deployments"]["kubeedge/cloudcore"]["phase"] == "Pending"
    assert data["events"][-1]["message"] == (
        "0/1 nodes are available: 1 node(s) had taint {node-role.kubernetes.io/control-plane: }, "
        "that the pod didn't tolerate."
    )


def test_one_key_per_set_tolerates_the_taints_and_creates_the_token(
    master: tuple[Board, str],
) -> None:
    board, kubeconfig = master
    out = keadm(board, "init", "--advertise-address=127.0.0.5", f"--kube-config={kubeconfig}",
                "--profile", "version=v1.13.0", *TOLERATE_CONTROL_PLANE)  # fmt: skip
    assert out.returncode == 0, out.stderr
    deploy = cluster.load(kubeconfig)["deployments"]["kubeedge/cloudcore"]
    assert (deploy["phase"], deploy["node"], deploy["image"]) == (
        "Running",
        "master",
        "kubeedge/cloudcore:v1.13.0",
    )
    # cloudcore makes tokensecret a moment after it starts (its token manager).
    token = wait_for(lambda: gettoken(board, kubeconfig), timeout=20, what="tokensecret")
    assert len(token.split(".")) == 4
    ca = base64.b64decode(cluster.load(kubeconfig)["secrets"]["kubeedge/casecret"]["cadata"])
    assert token.split(".")[0] == hashlib.sha256(ca).hexdigest()


def test_comma_joined_set_values_are_mangled(master: tuple[Board, str]) -> None:
    board, kubeconfig = master
    joined = ("cloudCore.tolerations[0].key=node-role.kubernetes.io/control-plane,"
              "cloudCore.tolerations[0].operator=Exists")  # fmt: skip
    out = keadm(board, "init", f"--kube-config={kubeconfig}", "--set", joined)
    assert out.returncode == 1
    tolerations = cluster.load(kubeconfig)["deployments"]["kubeedge/cloudcore"]["tolerations"]
    assert tolerations == [
        {"key": "node-role.kubernetes.io/control-plane,cloudCore.tolerations[0].operator"}
    ]


def test_kubeedge_version_flag_is_ignored_by_init(master: tuple[Board, str]) -> None:
    board, kubeconfig = master
    keadm(
        board,
        "init",
        f"--kube-config={kubeconfig}",
        "--kubeedge-version=v1.13.0",
        *TOLERATE_CONTROL_PLANE,
    )
    assert (
        cluster.load(kubeconfig)["deployments"]["kubeedge/cloudcore"]["image"]
        == "kubeedge/cloudcore:v1.12.0"
    )


def test_gettoken_before_init_and_without_kubeconfig(
    master: tuple[Board, str], tmp_path: Path
) -> None:
    board, kubeconfig = master
    out = keadm(board, "gettoken", f"--kube-config={kubeconfig}")
    # cloud/gettoken.go@v1.13.0 prints its own line, then cobra the client-go error.
    assert (out.returncode, out.stderr) == (1, 'Error: secrets "tokensecret" not found\n')
    assert out.stdout.splitlines() == [
        'failed to get token, err is secrets "tokensecret" not found',
        'execute keadm command failed:  secrets "tokensecret" not found',
    ]
    missing = keadm(board, "gettoken", f"--kube-config={tmp_path / 'nope'}")
    assert "no such file or directory" in missing.stderr


def test_reset_of_a_cloud_node_deletes_the_namespace(master: tuple[Board, str]) -> None:
    board, kubeconfig = master
    assert (
        keadm(board, "init", f"--kube-config={kubeconfig}", *TOLERATE_CONTROL_PLANE).returncode == 0
    )
    out = keadm(board, "reset", "--force", f"--kube-config={kubeconfig}")
    assert (out.returncode, out.stdout.strip()) == (0, 'namespace "kubeedge" deleted')
    # The namespace lingers, Terminating, while the namespace controller empties it.
    board.install_sim("kubectl", "tests.kubeedge_sim.kubectl")
    ns = json.loads(kubectl(board, kubeconfig, "get", "namespace", "kubeedge", "-o", "json").stdout)
    assert ns["status"]["phase"] == "Terminating"
    again = keadm(board, "init", f"--kube-config={kubeconfig}", *TOLERATE_CONTROL_PLANE)
    assert again.stderr == (
        'Error: create: failed to create: secrets "sh.helm.release.v1.cloudcore.v1" is forbidden: '
        "unable to create new content in namespace kubeedge because it is being terminated\n"
    )
    wait_for(
        lambda: kubectl(board, kubeconfig, "get", "namespace", "kubeedge").returncode == 1,
        timeout=20,
        what="namespace kubeedge to go",
    )
    assert cluster.load(kubeconfig)["secrets"] == {}


def kubectl(board: Board, kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(board.path("/usr/local/bin/kubectl")), f"--kubeconfig={kubeconfig}", *args],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip


def test_kubectl_reads_the_cluster_and_the_patch_schedules_cloudcore(
    master: tuple[Board, str],
) -> None:
    board, kubeconfig = master
    board.install_sim("kubectl", "tests.kubeedge_sim.kubectl")
    version = json.loads(kubectl(board, kubeconfig, "version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == "v1.23.17"
    nodes = json.loads(kubectl(board, kubeconfig, "get", "nodes", "-o", "json").stdout)["items"]
    assert nodes[0]["spec"]["taints"][0]["key"] == "node-role.kubernetes.io/control-plane"
    missing = kubectl(board, kubeconfig, "get", "namespace", "kubeedge", "-o", "json")
    assert (missing.returncode, missing.stderr) == (
        1,
        'Error from server (NotFound): namespaces "kubeedge" not found\n',
    )
    assert (
        keadm(board, "init", f"--kube-config={kubeconfig}").returncode == 1
    )  # Pending on the taint
    deploy = json.loads(
        kubectl(
            board, kubeconfig, "-n", "kubeedge", "get", "deployment", "cloudcore", "-o", "json"
        ).stdout
    )
    assert deploy["status"]["availableReplicas"] == 0
    events = json.loads(
        kubectl(board, kubeconfig, "-n", "kubeedge", "get", "events", "-o", "json").stdout
    )["items"]
    assert events[-1]["reason"] == "FailedScheduling"
    tolerations = [{"key": k, "operator": "Exists", "effect": "NoSchedule"}
                   for k in ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")]  # fmt: skip
    patch = json.dumps(
        [{"op": "add", "path": "/spec/template/spec/tolerations", "value": tolerations}]
    )
    patched = kubectl(
        board,
        kubeconfig,
        "-n",
        "kubeedge",
        "patch",
        "deployment",
        "cloudcore",
        "--type=json",
        "-p",
        patch,
    )
    assert patched.returncode == 0, patched.stderr
    wait_for(
        lambda: (
            json.loads(
                kubectl(
                    board, kubeconfig, "-n", "kubeedge", "get", "deploy", "cloudcore", "-o", "json"
                ).stdout
            )["status"]["availableReplicas"]
            == 1
        ),
        timeout=20,
        what="the patched Deployment to become Available",
    )
    token = wait_for(lambda: gettoken(board, kubeconfig), timeout=20, what="tokensecret")
    assert len(token.split(".")) == 4


def _ca_from_port(address: str) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # as edgecore fetches /ca.crt
    with socket.create_connection((address, 10002), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        tls.sendall(b"GET /ca.crt HTTP/1.0\r\n\r\n")
        reply = b""
        while chunk := tls.recv(65536):
            reply += chunk
    return reply.split(b"\r\n\r\n", 1)[1]


def test_the_pod_serves_cloudhub_and_a_second_init_needs_force(master: tuple[Board, str]) -> None:
    board, kubeconfig = master
    init = [
        "init",
        "--advertise-address=127.0.0.5",
        f"--kube-config={kubeconfig}",
        *TOLERATE_CONTROL_PLANE,
    ]
    assert keadm(board, *init).returncode == 0
    pid = cluster.load(kubeconfig)["deployments"]["kubeedge/cloudcore"]["pid"]
    wait_for(lambda: sim.programs_running("cloudcore") == [pid], timeout=20, what="cloudcore pod")
    token = wait_for(lambda: gettoken(board, kubeconfig), timeout=20, what="tokensecret")
    ca = wait_for(lambda: _ca_from_port("127.0.0.5"), timeout=20, what="cloudhub port 10002")
    assert hashlib.sha256(ca).hexdigest() == token.split(".")[0]

    again = keadm(board, *init)
    assert (again.returncode, again.stderr.splitlines()[0]) == (
        1, "Error: CloudCore is already running on this node, please run reset to clean up first")  # fmt: skip
    forced = keadm(board, *init[:3], "--profile", "version=v1.13.0", "--force")
    assert forced.returncode == 0
    # installer.go@v1.13.0 lines 140-152: an upgrade is the release's next revision.
    assert forced.stdout.splitlines()[1:3] == ["CLOUDCORE started", "=========CHART DETAILS======="]
    assert "REVISION: 2" in forced.stdout
    # --force does not wait: the rolled pod lost its tolerations, so it is Pending now.
    assert cluster.load(kubeconfig)["deployments"]["kubeedge/cloudcore"]["phase"] == "Pending"
    assert not sim.programs_running("cloudcore")


def test_reset_ends_the_pod(master: tuple[Board, str]) -> None:
    board, kubeconfig = master
    assert keadm(board, "init", "--advertise-address=127.0.0.5", f"--kube-config={kubeconfig}",
                 *TOLERATE_CONTROL_PLANE).returncode == 0  # fmt: skip
    wait_for(lambda: sim.programs_running("cloudcore"), timeout=20, what="cloudcore pod")
    assert keadm(board, "reset", "--force", f"--kube-config={kubeconfig}").returncode == 0
    assert sim.programs_running("cloudcore") == []


def test_a_killed_init_leaves_the_release_pending_and_blocks_the_next(
    master: tuple[Board, str],
) -> None:
    """Helm writes the release record before its wait: keadm killed while it waits
    leaves `pending-install`, and every later init (an upgrade, since a release exists)
    stops at helm's pessimistic lock (upgrade.go line 180)."""
    board, kubeconfig = master
    board.write(
        "/var/lib/kedge-sim/keadm.json", json.dumps({"version": "v1.13.0", "init_wait_s": 60})
    )
    waiting = subprocess.Popen([str(board.path("/usr/local/bin/keadm")), "init", f"--kube-config={kubeconfig}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: helm.last(cluster.load(kubeconfig), "kubeedge", "cloudcore"),
                 timeout=20, what="helm's release record")  # fmt: skip
    finally:
        waiting.kill()
        waiting.wait(10)
    assert helm.last(cluster.load(kubeconfig), "kubeedge", "cloudcore") == {
        "owner": "helm", "name": "cloudcore", "status": "pending-install", "version": "1"}  # fmt: skip
    again = keadm(board, "init", f"--kube-config={kubeconfig}", "--force", *TOLERATE_CONTROL_PLANE)
    assert (again.returncode, again.stderr) == (
        1, "Error: another operation (install/upgrade/rollback) is in progress\n")  # fmt: skip


def test_a_small_master_has_insufficient_memory(master: tuple[Board, str]) -> None:
    board, kubeconfig = master
    with cluster.update(kubeconfig) as data:
        data["nodes"][0]["allocatable"]["memory"] = "400Mi"
    out = keadm(board, "init", f"--kube-config={kubeconfig}", *TOLERATE_CONTROL_PLANE)
    assert out.stderr == "Error: timed out waiting for the condition\n"
    assert cluster.load(kubeconfig)["events"][-1]["message"] == (
        "0/1 nodes are available: 1 Insufficient memory."
    )
    assert (helm.last(cluster.load(kubeconfig), "kubeedge", "cloudcore") or {})[
        "status"
    ] == "failed"


def test_helms_wait_includes_pulling_the_image(master: tuple[Board, str]) -> None:
    """The 60 s wait runs from the install, so a slow first pull times keadm out while
    the pod goes on to start."""
    board, kubeconfig = master
    with cluster.update(kubeconfig) as data:
        data["image_pull_s"] = 4.0
    out = keadm(board, "init", f"--kube-config={kubeconfig}", *TOLERATE_CONTROL_PLANE)
    assert out.stderr == "Error: timed out waiting for the condition\n"
    board.install_sim("kubectl", "tests.kubeedge_sim.kubectl")
    pods = json.loads(
        kubectl(board, kubeconfig, "-n", "kubeedge", "get", "pods", "-o", "json").stdout
    )
    assert pods["items"][0]["status"]["containerStatuses"][0]["state"] == {
        "waiting": {"reason": "ContainerCreating"}}  # fmt: skip
    wait_for(
        lambda: json.loads(kubectl(board, kubeconfig, "-n", "kubeedge", "get", "deploy", "cloudcore",
                                   "-o", "json").stdout)["status"]["availableReplicas"] == 1,
        timeout=30, what="the pod once its image is pulled",
    )  # fmt: skip


def test_a_taken_host_port_crash_loops_the_pod(master: tuple[Board, str]) -> None:
    board, kubeconfig = master
    board.install_sim("kubectl", "tests.kubeedge_sim.kubectl")
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.5", 10000))
        taken.listen()
        out = keadm(board, "init", "--advertise-address=127.0.0.5", f"--kube-config={kubeconfig}",
                    *TOLERATE_CONTROL_PLANE)  # fmt: skip
        assert out.stderr == "Error: timed out waiting for the condition\n"
        pod = json.loads(
            kubectl(board, kubeconfig, "-n", "kubeedge", "get", "pods", "-o", "json").stdout
        )
        status = pod["items"][0]["status"]["containerStatuses"][0]
        assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
        assert status["lastState"]["terminated"] == {"exitCode": 1, "reason": "Error"}
        logs = kubectl(board, kubeconfig, "-n", "kubeedge", "logs", "deployment/cloudcore", "--previous",
                       "--tail=1").stdout  # fmt: skip
        assert logs.rstrip().endswith("listen tcp 127.0.0.5:10000: bind: address already in use")

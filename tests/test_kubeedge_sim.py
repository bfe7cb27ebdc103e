"""The simulator must break where keadm v1.13 and edgecore break, or the end-to-end
tests prove nothing. These run keadm directly with the flags a careless user types."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.board import Board
from tests.harness.dockerd import Dockerd, api
from tests.harness.wait import wait_for
from tests.kubeedge_sim import sim
from tests.kubeedge_sim.cloudcore import CloudcoreSim

pytestmark = pytest.mark.docker


@pytest.fixture
def sim_board(board: Board, dockerd_systemd: Dockerd) -> Iterator[Board]:
    board.install_systemd()
    yield board
    board.stop_processes()
    _, body = api(dockerd_systemd.socket, "GET", "/containers/json?all=1")
    for c in json.loads(body):
        api(dockerd_systemd.socket, "DELETE", f"/containers/{c['Id']}?force=1")


def keadm(board: Board, docker: Dockerd, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(board.path("/usr/local/bin/keadm")), *args],
        capture_output=True, text=True, timeout=120, check=False,
        env={"DOCKER_HOST": f"unix://{docker.socket}", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def journal(board: Board) -> str:
    path = board.path(f"/{sim.SIM_DIR}/journal/edgecore.service.log")
    return path.read_text() if path.exists() else ""


def edgecore_dead(board: Board) -> bool:
    units = json.loads(board.path(f"/{sim.SIM_DIR}/systemd.json").read_text())["units"]
    return not sim.alive(units["edgecore.service"].get("pid"))


def base(cc: CloudcoreSim) -> list[str]:
    return [
        "join",
        f"--cloudcore-ipport={cc.cloudcore}",
        f"--certport={cc.cert_port}",
        f"--token={cc.pki.token()}",
    ]


def test_cobra_errors(sim_board: Board, dockerd_systemd: Dockerd) -> None:
    unknown = keadm(sim_board, dockerd_systemd, "join", "--runtime=docker")
    assert (unknown.returncode, unknown.stderr) == (1, "Error: unknown flag: --runtime\n")
    missing = keadm(sim_board, dockerd_systemd, "join", "-t", "x")
    assert missing.returncode == 1
    assert missing.stderr.startswith('Error: required flag(s) "cloudcore-ipport" not set')


def test_defaults_mean_containerd_and_edgecore_dies_without_it(
    sim_board: Board, dockerd_systemd: Dockerd, cloudcore: CloudcoreSim
) -> None:
    done = keadm(sim_board, dockerd_systemd, *base(cloudcore))
    assert done.returncode == 0, done.stderr  # keadm only waits for certificates
    yaml = sim_board.path("/etc/kubeedge/config/edgecore.yaml").read_text()
    assert "containerRuntime: remote" in yaml
    assert "remoteRuntimeEndpoint: unix:///run/containerd/containerd.sock" in yaml
    assert "cgroupDriver: cgroupfs" in yaml
    wait_for(lambda: edgecore_dead(sim_board), timeout=20, what="edgecore to exit")
    assert (
        'CRI v1 runtime API is not implemented for endpoint "unix:///run/containerd/containerd.sock"'
        in journal(sim_board)
    )


def test_docker_endpoint_at_dockers_socket_deletes_it(
    sim_board: Board, dockerd_systemd: Dockerd, cloudcore: CloudcoreSim
) -> None:
    path = sim_board.path("/var/run/docker.sock")
    path.parent.mkdir(parents=True, exist_ok=True)
    docker_sock = socket.socket(socket.AF_UNIX)
    docker_sock.bind(str(path))
    docker_sock.listen()
    inode = path.stat().st_ino
    try:
        keadm(sim_board, dockerd_systemd, *base(cloudcore), "--runtimetype=docker",
              "--remote-runtime-endpoint=unix:///var/run/docker.sock", "--cgroupdriver=systemd")  # fmt: skip
        wait_for(
            lambda: "Unlinked socket" in journal(sim_board), timeout=20, what="dockershim start"
        )
    finally:
        docker_sock.close()
    assert path.stat().st_ino != inode  # docker's socket is gone; dockershim's sits there now


def test_cgroup_driver_mismatch_crash_loops_with_kubelets_words(
    sim_board: Board, dockerd_systemd: Dockerd, cloudcore: CloudcoreSim
) -> None:
    done = keadm(sim_board, dockerd_systemd, *base(cloudcore), "--runtimetype=docker",
                 "--remote-runtime-endpoint=unix:///var/run/dockershim.sock")  # fmt: skip
    assert done.returncode == 0, done.stderr
    wait_for(lambda: edgecore_dead(sim_board), timeout=20, what="edgecore to exit")
    assert (
        'misconfiguration: kubelet cgroup driver: "cgroupfs" is different from docker cgroup driver: "systemd"'
        in journal(sim_board)
    )


def test_a_second_join_refuses_a_dirty_board(
    sim_board: Board, dockerd_systemd: Dockerd, cloudcore: CloudcoreSim
) -> None:
    sim_board.mkdir("/etc/kubeedge/config")
    refused = keadm(sim_board, dockerd_systemd, *base(cloudcore))
    assert refused.returncode == 1
    assert (
        "the management directory /etc/kubeedge/ is not clean, please remove it first"
        in refused.stderr
    )


def test_reset_does_nothing_when_edgecore_is_not_running(
    sim_board: Board, dockerd_systemd: Dockerd
) -> None:
    sim_board.mkdir("/etc/kubeedge/config")
    done = keadm(sim_board, dockerd_systemd, "reset", "--force")
    assert done.returncode == 0
    assert done.stdout == "None of KubeEdge components are running in this host, exit\n"
    assert sim_board.path("/etc/kubeedge/config").is_dir()  # the 1.13 trap kedge's reset avoids


def test_wrong_token_times_out_like_keadm(
    sim_board: Board, dockerd_systemd: Dockerd, cloudcore: CloudcoreSim, tmp_path: Path
) -> None:
    from tests.kubeedge_sim.pki import CloudcorePKI

    other = CloudcorePKI.create(["127.0.0.1"]).token()
    args = [a if not a.startswith("--token=") else f"--token={other}" for a in base(cloudcore)]
    done = keadm(sim_board, dockerd_systemd, *args, "--runtimetype=docker", "--cgroupdriver=systemd",
                 "--remote-runtime-endpoint=unix:///var/run/dockershim.sock")  # fmt: skip
    assert done.returncode == 1
    assert "Error: edge node join failed: timed out waiting for the condition" in done.stderr
    assert "failed to validate CA certificate. tokenCAhash: " in journal(sim_board)

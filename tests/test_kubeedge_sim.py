"""The simulator must break where keadm v1.13 and edgecore break, or the end-to-end
tests prove nothing. These run keadm directly with the flags a careless user types."""

from __future__ import annotations

import contextlib
import json
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.edgecore_dropin import DROPIN, dropin_text
from tests.harness.board import Board
from tests.harness.dockerd import Dockerd, api
from tests.harness.wait import wait_for
from tests.kubeedge_sim import sim, systemctl
from tests.kubeedge_sim.cloudcore import CloudcoreSim

pytestmark = pytest.mark.docker


@pytest.fixture
def sim_board(board: Board, dockerd_systemd: Dockerd) -> Iterator[Board]:
    """A board whose edgecore is told where docker is, as kedge's join does (the test's
    dockerd is not at the board's /var/run/docker.sock)."""
    board.install_systemd()
    board.write(DROPIN, dropin_text(dockerd_systemd.socket))
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


def error_of(done: subprocess.CompletedProcess[str]) -> str:
    """cobra's "Error: …", after keadm's klog step lines on the same stream."""
    return done.stderr[done.stderr.index("Error: ") :]


def journal(board: Board) -> str:
    path = board.path(f"/{sim.SIM_DIR}/journal/edgecore.service.log")
    return path.read_text() if path.exists() else ""


def edgecore_dead(board: Board) -> bool:
    """edgecore exited: systemd waits to restart it (Restart=always) or gave up."""
    units = json.loads(board.path(f"/{sim.SIM_DIR}/systemd.json").read_text())["units"]
    return systemctl.active_state(units["edgecore.service"]) != "active"


@contextlib.contextmanager
def docker_socket_at(path: Path) -> Iterator[int]:
    """Something listening where docker's socket is on a board; yields its inode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        sock.listen()
        yield path.stat().st_ino


# what kedge's join passes on a docker board whose docker uses the systemd driver
DOCKERSHIM = ["--runtimetype=docker", "--remote-runtime-endpoint=unix:///var/run/dockershim.sock",
              "--cgroupdriver=systemd"]  # fmt: skip


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


def test_defaults_mean_containerd_and_keadm_stops_without_it(
    sim_board: Board, dockerd_systemd: Dockerd, cloudcore: CloudcoreSim
) -> None:
    # --runtimetype defaults to remote, the endpoint to containerd's socket: keadm asks the
    # CRI for its image API before pulling anything (remote_image.go@v1.13.0).
    done = keadm(sim_board, dockerd_systemd, *base(cloudcore))
    assert done.returncode == 1
    assert error_of(done) == (
        "Error: edge node join failed: unable to determine image API version: rpc error: code = "
        'Unavailable desc = connection error: desc = "transport: Error while dialing dial unix '
        '/run/containerd/containerd.sock: connect: no such file or directory"\n'
    )
    assert "Pull Images" not in done.stderr
    assert "3. Create the necessary directories" in done.stderr
    # Step 3 already made the directories: the next join's preflight refuses them.
    assert sim_board.path("/etc/kubeedge/config").is_dir()


def test_docker_endpoint_at_dockers_socket_deletes_it(
    sim_board: Board, dockerd_systemd: Dockerd, cloudcore: CloudcoreSim
) -> None:
    path = sim_board.path("/var/run/docker.sock")
    with docker_socket_at(path) as inode:
        keadm(sim_board, dockerd_systemd, *base(cloudcore), "--runtimetype=docker",
              "--remote-runtime-endpoint=unix:///var/run/docker.sock", "--cgroupdriver=systemd")  # fmt: skip
        wait_for(
            lambda: "Unlinked socket" in journal(sim_board), timeout=20, what="dockershim start"
        )
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
    # The tip comes before keadm's 300 s wait (join.go runEdgeCore): it proves nothing.
    assert re.search(
        r"^I\d{4} [\d:.]+ +\d+ join\.go:432\] KubeEdge edgecore is running, For logs visit",
        done.stderr,
        re.M,
    )


@pytest.mark.parametrize(
    ("missing", "says"),
    [
        ("/usr/bin/sudo", "err: bash: line 1: sudo: command not found\n, err: exit status 127"),
        ("/usr/bin/bash", 'err: exec: "bash": executable file not found in $PATH'),
    ],
)
def test_join_starts_edgecore_through_bash_and_sudo(
    sim_board: Board, dockerd_systemd: Dockerd, cloudcore: CloudcoreSim, missing: str, says: str
) -> None:
    # edge/join.go@v1.13.0 runEdgeCore(): bash -c "sudo systemctl daemon-reload && ..."
    sim_board.path(missing).unlink()
    done = keadm(sim_board, dockerd_systemd, *base(cloudcore), *DOCKERSHIM)
    assert done.returncode == 1
    assert error_of(done).startswith(
        "Error: edge node join failed: start edgecore failed: failed to exec 'bash -c sudo systemctl "
        "daemon-reload && sudo systemctl enable edgecore && sudo systemctl start edgecore', "
    )
    assert says in done.stderr
    assert sim_board.path("/etc/systemd/system/edgecore.service").exists()  # written before


def test_reset_on_a_board_with_the_clusters_kubeconfig_deletes_cloudcore(
    sim_board: Board, dockerd_systemd: Dockerd, tmp_path: Path
) -> None:
    # The danger kedge's reset avoids (test_join: ..._never_tears_down_cloudcore_...):
    # keadm's RunningModuleV2 asks the cluster before looking for edgecore.
    from tests.kubeedge_sim import cluster

    kubeconfig = cluster.with_cloudcore(tmp_path / "master" / "config")
    sim_board.symlink("/root/.kube/config", str(kubeconfig))
    done = keadm(sim_board, dockerd_systemd, "reset", "--force")
    assert (done.returncode, done.stdout) == (0, 'namespace "kubeedge" deleted\n')
    assert "kubeedge" in cluster.load(str(kubeconfig))["terminating"]  # being deleted


def test_mqtt_container_needs_port_9001_too(
    sim_board: Board, dockerd_systemd: Dockerd, cloudcore: CloudcoreSim
) -> None:
    # util/image.go@v1.13.0 RunMQTT(): host ports 1883:1883 and 9001:9001, then start.
    from agent.diagnose import recognise

    holder = socket.create_server(("127.0.0.1", 9001))
    try:
        done = keadm(sim_board, dockerd_systemd, *base(cloudcore), *DOCKERSHIM)
    finally:
        holder.close()
    assert done.returncode == 1
    assert (
        "Error: edge node join failed: run MQTT failed: Error response from daemon: driver failed "
        in done.stderr
    )
    assert "listen tcp4 0.0.0.0:9001: bind: address already in use" in done.stderr
    (cause,) = recognise(done.stdout, done.stderr)
    assert (cause.id, cause.summary) == (
        "mqtt-port",
        "port 9001 is taken, so keadm's MQTT container cannot start",
    )


def test_every_image_is_announced_and_present_ones_are_skipped(
    sim_board: Board, dockerd_systemd: Dockerd, cloudcore: CloudcoreSim
) -> None:
    from tests.conftest import HUB_IMAGES

    done = keadm(sim_board, dockerd_systemd, *base(cloudcore), *DOCKERSHIM)
    assert done.returncode == 0, done.stderr
    for ref in HUB_IMAGES:
        assert f"Pulling {ref} ...\n" in done.stdout
        assert f"Successfully pulled {ref}" not in done.stdout  # already there: not pulled


def test_a_cgroup_mismatch_fails_before_dockershim_takes_the_socket(
    sim_board: Board, dockerd_systemd: Dockerd, cloudcore: CloudcoreSim
) -> None:
    # kubelet_dockershim.go@v1.13.0: NewDockerService (the cgroup check) before
    # NewDockerServer(...).Start() (the unlink): a mismatch leaves docker's socket alone.
    path = sim_board.path("/var/run/docker.sock")
    with docker_socket_at(path) as inode:
        keadm(sim_board, dockerd_systemd, *base(cloudcore), "--runtimetype=docker",
              "--remote-runtime-endpoint=unix:///var/run/docker.sock", "--cgroupdriver=cgroupfs")  # fmt: skip
        wait_for(lambda: "is different from docker cgroup driver" in journal(sim_board), timeout=20,
                 what="edged's cgroup check")  # fmt: skip
    assert "Unlinked socket" not in journal(sim_board)
    assert path.stat().st_ino == inode


def test_steps_are_klog_lines_numbered_as_they_run(
    sim_board: Board, dockerd_systemd: Dockerd, cloudcore: CloudcoreSim
) -> None:
    # common/step.go@v1.13.0: klog.InfoDepth(2, "<n>. <text>"), n counting the steps run:
    # without the MQTT step the later steps move up one.
    done = keadm(sim_board, dockerd_systemd, *base(cloudcore), *DOCKERSHIM, "--with-mqtt=false")
    assert done.returncode == 0, done.stderr
    steps = re.findall(r"^I\d{4} \d\d:\d\d:\d\d\.\d{6} +\d+ (\S+)\] (\d+\. .*)$", done.stderr, re.M)
    assert steps == [
        ("join.go:75", "1. Check KubeEdge edgecore process status"),
        ("join.go:84", "2. Check if the management directory is clean"),
        ("join.go:177", "3. Create the necessary directories"),
        ("image.go:38", "4. Pull Images"),
        ("image.go:43", "5. Copy resources from the image to the management directory"),
        ("join.go:188", "6. Generate systemd service file"),
        ("join.go:200", "7. Generate EdgeCore default configuration"),
        ("join.go:205", "8. Run EdgeCore daemon"),
    ]
    assert "Pulling kubeedge/pause:3.6 ...\n" in done.stdout  # fmt.Printf: stdout
    # join() defers removing the bootstrap file that held the token (join.go@v1.13.0 line 198).
    assert not sim_board.path("/etc/kubeedge/bootstrap-edgecore.conf").exists()


def test_edgecore_takes_docker_from_its_unit_not_from_keadm(
    sim_board: Board, dockerd_systemd: Dockerd, cloudcore: CloudcoreSim
) -> None:
    """keadm pulls through its own DOCKER_HOST; edgecore, started by systemd, gets the
    unit's environment and no dockerEndpoint (libdocker/client.go@v1.13.0, FromEnv)."""
    sim_board.path(DROPIN).unlink()
    done = keadm(sim_board, dockerd_systemd, *base(cloudcore), *DOCKERSHIM)
    assert done.returncode == 0, done.stderr  # certificates came first; keadm is content
    wait_for(lambda: edgecore_dead(sim_board), timeout=20, what="edgecore to exit")
    assert (
        "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
        in journal(sim_board)
    )


# -- v1.16 and later (tests/kubeedge_sim/keadm_cri.py) ----------------------------------------
@pytest.mark.parametrize(
    ("version", "flag", "accepted"),
    [
        ("v1.20.0", "--with-mqtt", True),  # deprecated from v1.16, still parsed
        ("v1.21.0", "--with-mqtt", False),  # gone (join_others.go@v1.21.0)
        ("v1.16.0", "--runtimetype=remote", False),  # gone at v1.16
        ("v1.17.0", "--set=a=b", False),  # appears at v1.18
        ("v1.19.0", "--pre-run=x", False),  # appears at v1.20
    ],
)
def test_each_release_knows_its_own_join_flags(
    sim_board: Board, dockerd_systemd: Dockerd, cloudcore: CloudcoreSim,
    version: str, flag: str, accepted: bool,
) -> None:  # fmt: skip
    sim_board.install_keadm(version=version)
    done = keadm(sim_board, dockerd_systemd, *base(cloudcore), flag,
                 "--remote-runtime-endpoint=unix:///nonexistent/containerd.sock")  # fmt: skip
    name = flag.split("=", 1)[0]
    assert (f"unknown flag: {name}" not in done.stderr) is accepted, done.stderr


def test_from_v1_20_join_asks_cloudcore_whether_the_node_exists_first(
    sim_board: Board, dockerd_systemd: Dockerd, cloudcore: CloudcoreSim
) -> None:
    """edge/join.go@v1.23.1 isNodeExist: before any directory is made, and with the
    certificate unverified; cloudcore before v1.20 would answer 404 for any path."""
    sim_board.install_keadm(version="v1.23.1")
    with CloudcoreSim(cloudcore.pki, version="v1.23.1", nodes={"board-1"}) as cc:
        done = keadm(sim_board, dockerd_systemd, *base(cc), "--edgenode-name=board-1")
    assert done.returncode == 1
    assert error_of(done) == (
        "Error: node already exists or internal error occurred, cannot register again\n"
    )
    assert "3. Check if the node name is valid" in done.stderr
    assert not sim_board.path("/etc/kubeedge").exists()


def test_v1_23_join_without_a_cri_stops_before_pulling(
    sim_board: Board, dockerd_systemd: Dockerd, cloudcore: CloudcoreSim
) -> None:
    sim_board.install_keadm(version="v1.23.1")
    with CloudcoreSim(cloudcore.pki, version="v1.23.1") as cc:
        done = keadm(sim_board, dockerd_systemd, *base(cc),
                     "--remote-runtime-endpoint=unix:///nonexistent/containerd.sock")  # fmt: skip
    assert done.returncode == 1
    assert error_of(done).startswith(
        "Error: edge node join failed: failed to new remote image service, err: validate service "
        'connection: validate CRI v1 image API for endpoint "unix:///nonexistent/containerd.sock": '
        "rpc error: code = Unavailable"
    )
    assert "execute keadm command failed" not in done.stdout  # v1.13's main printed it; gone
    assert "Pull Images" not in done.stderr

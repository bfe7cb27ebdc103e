"""docker, cgroup-driver and images against real dockerd instances."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from kedge.wire import CheckResult
from tests.conftest import HUB_IMAGES, AgentRun, AgentRunner, check_one, statuses
from tests.harness.board import PROC_CGROUPS, Board
from tests.harness.dockerd import Dockerd

pytestmark = pytest.mark.docker


def run(agent: AgentRunner, board: Board, only: str) -> AgentRun:
    return agent(board, "check", "--json", "--only", only)


def docker_settings(d: Dockerd, **extra: object) -> dict[str, object]:
    return {"docker_host": f"unix://{d.socket}", "thresholds": {"docker_min_free_mb": 1}, **extra}


def test_docker_passes_with_version_and_space(
    board: Board, agent: AgentRunner, dockerd_systemd: Dockerd
) -> None:
    board.configure(docker_settings(dockerd_systemd))
    result = run(agent, board, "docker").result("docker")
    assert result.status == "pass"
    assert result.summary.startswith("Docker 20.10")
    assert f"MB free in {dockerd_systemd.workdir / 'data'}" in result.summary
    assert result.details["cgroup_driver"] == "systemd"
    assert result.details["storage_driver"] == "vfs"


def test_docker_host_environment_is_honoured(
    board: Board, agent: AgentRunner, dockerd_systemd: Dockerd
) -> None:
    board.configure({"thresholds": {"docker_min_free_mb": 1}})
    result = agent(
        board,
        "check",
        "--json",
        "--only",
        "docker",
        env={"DOCKER_HOST": f"unix://{dockerd_systemd.socket}"},
    )
    assert result.result("docker").status == "pass"


def test_too_little_space_in_the_data_root(
    board: Board, agent: AgentRunner, dockerd_systemd: Dockerd
) -> None:
    board.configure(docker_settings(dockerd_systemd, thresholds={"docker_min_free_mb": 10**9}))
    result = run(agent, board, "docker").result("docker")
    assert result.status == "fail"
    assert result.summary.endswith("at least 1000000000 MB are needed for KubeEdge's images")
    assert "data-root" in result.remedy


def test_invalid_daemon_json_names_line_and_column(
    board: Board, agent: AgentRunner, dockerd_systemd: Dockerd
) -> None:
    board.write(
        "/etc/docker/daemon.json",
        '{\n  "registry-mirrors": ["https://m.example"],\n  "exec-opts": [native]\n}\n',
    )
    board.configure(docker_settings(dockerd_systemd))
    out = run(agent, board, "docker,cgroup-driver")
    result = out.result("docker")
    assert result.status == "fail"
    assert result.summary == "/etc/docker/daemon.json: line 3 column 17: Expecting value"
    assert "json.tool" in result.remedy
    assert out.result("cgroup-driver").status == "skip"


def test_daemon_json_not_yet_applied_is_a_warning(
    board: Board, agent: AgentRunner, dockerd_systemd: Dockerd
) -> None:
    board.write("/etc/docker/daemon.json", '{"exec-opts": ["native.cgroupdriver=cgroupfs"]}')
    board.configure(docker_settings(dockerd_systemd))
    result = run(agent, board, "docker").result("docker")
    assert result.status == "warn"
    assert result.summary.endswith(
        "asks for cgroup driver cgroupfs but the running daemon uses systemd"
    )
    assert (
        result.remedy
        == "Docker was not restarted after daemon.json changed: systemctl restart docker"
    )


def test_no_docker_socket(board: Board, agent: AgentRunner, tmp_path: Path) -> None:
    board.configure({"docker_host": str(tmp_path / "docker.sock")})
    out = run(agent, board, "docker,cgroup-driver,images")
    result = out.result("docker")
    assert result.status == "fail"
    assert result.summary == (
        f"Docker does not answer: ping: cannot connect to {tmp_path / 'docker.sock'}: No such file or directory"
    )
    assert "apt install docker.io" in result.remedy
    assert statuses(out) == {"docker": "fail", "cgroup-driver": "skip", "images": "skip"}


@pytest.fixture
def dead_socket(tmp_path: Path) -> Path:
    """A socket file with no daemon behind it: what a crashed dockerd leaves."""
    path = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()
    return path


def test_dead_docker_socket_is_refused(board: Board, agent: AgentRunner, dead_socket: Path) -> None:
    board.configure({"docker_host": f"unix://{dead_socket}"})
    result = run(agent, board, "docker").result("docker")
    assert result.status == "fail"
    assert result.summary.endswith("Connection refused")
    assert "dockerd --debug" in result.remedy


def test_hung_docker_daemon_times_out(board: Board, agent: AgentRunner, tmp_path: Path) -> None:
    path = tmp_path / "hung.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        s.listen()  # accepts connections, never answers
        board.configure({"docker_host": str(path)})
        result = run(agent, board, "docker").result("docker")
    assert result.status == "fail"
    assert result.summary == f"Docker does not answer: ping: no answer from {path} in time"


def cgroup(agent: AgentRunner, board: Board) -> CheckResult:
    return check_one(agent, board, "cgroup-driver")


def test_auto_follows_dockers_systemd_driver(
    board: Board, agent: AgentRunner, dockerd_systemd: Dockerd
) -> None:
    board.configure(docker_settings(dockerd_systemd))
    result = cgroup(agent, board)
    assert result.status == "pass"
    assert result.summary == "docker and the join both use systemd"
    assert result.details["join"] == "systemd"


def test_auto_follows_dockers_cgroupfs_driver(
    board: Board, agent: AgentRunner, dockerd_cgroupfs: Dockerd
) -> None:
    board.configure(docker_settings(dockerd_cgroupfs))
    assert cgroup(agent, board).summary == "docker and the join both use cgroupfs"


@pytest.mark.parametrize(("daemon", "setting"), [("systemd", "cgroupfs"), ("cgroupfs", "systemd")])
def test_explicit_mismatch_fails_with_both_fixes(
    board: Board,
    agent: AgentRunner,
    dockerd_systemd: Dockerd,
    dockerd_cgroupfs: Dockerd,
    daemon: str,
    setting: str,
) -> None:
    d = dockerd_systemd if daemon == "systemd" else dockerd_cgroupfs
    board.configure(docker_settings(d, cgroup_driver=setting))
    result = cgroup(agent, board)
    assert result.status == "fail"
    assert result.summary.startswith(f"docker uses {daemon} but cgroup_driver = {setting}")
    assert (
        f'kubelet cgroup driver: "{setting}" is different from docker cgroup driver: "{daemon}"'
        in result.summary
    )
    assert f'set cgroup_driver = "auto" (or "{daemon}")' in result.remedy
    assert f'"exec-opts": ["native.cgroupdriver={setting}"]' in result.remedy


def test_a_joined_board_is_held_to_the_driver_its_edgecore_yaml_says(
    board: Board, agent: AgentRunner, dockerd_systemd: Dockerd
) -> None:
    """docker moved to systemd after the join (the field guide's way to meet it): the
    setting "auto" follows docker, edgecore does not — its edgecore.yaml says which."""
    board.configure(docker_settings(dockerd_systemd, state_dir="/var/lib/kedge-agent"))
    board.write(
        "/var/lib/kedge-agent/join.json",
        json.dumps(
            {
                "phase": "joined",
                "node": "board-1",
                "cloudcore": "198.18.0.2:10000",
                "kubeedge_version": "v1.13.0",
                "started_at": "2026-11-29T09:00:00Z",
                "finished_at": "2026-11-29T09:01:00Z",
            }
        ),
    )
    board.write(
        "/etc/kubeedge/config/edgecore.yaml", "modules:\n  edged:\n    cgroupDriver: cgroupfs\n"
    )
    result = cgroup(agent, board)
    assert result.status == "fail"
    assert result.summary.startswith(
        "edgecore.yaml says cgroupDriver: cgroupfs but docker uses systemd"
    )
    assert result.remedy.startswith(
        "Set cgroupDriver: systemd in /etc/kubeedge/config/edgecore.yaml"
    )


def test_memory_cgroup_disabled_names_the_boot_file(
    board: Board, agent: AgentRunner, dockerd_systemd: Dockerd
) -> None:
    board.write("/proc/cgroups", PROC_CGROUPS.replace("memory\t5\t80\t1", "memory\t0\t1\t0"))
    board.write("/boot/firmware/cmdline.txt", "console=tty1 root=/dev/mmcblk0p2\n")
    board.configure(docker_settings(dockerd_systemd))
    result = cgroup(agent, board)
    assert result.status == "fail"
    assert (
        result.summary
        == "the kernel's memory cgroup is disabled (/proc/cgroups); edgecore cannot limit pods"
    )
    assert result.remedy == (
        "Enable the memory cgroup: append to its single line in /boot/firmware/cmdline.txt: "
        "cgroup_enable=memory cgroup_memory=1, then reboot."
    )


def test_cgroup_v2_without_memory_controller(
    board: Board, agent: AgentRunner, dockerd_systemd: Dockerd
) -> None:
    board.write("/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io pids\n")
    board.write("/boot/extlinux/extlinux.conf", "append root=/dev/mmcblk1p2\n")
    board.configure(docker_settings(dockerd_systemd))
    result = cgroup(agent, board)
    assert result.status == "fail"
    assert "(/sys/fs/cgroup/cgroup.controllers)" in result.summary
    assert "add to the append line in /boot/extlinux/extlinux.conf" in result.remedy


def images(agent: AgentRunner, board: Board) -> CheckResult:
    return check_one(agent, board, "images")


def test_images_present_after_a_real_pull(
    board: Board, agent: AgentRunner, dockerd_systemd: Dockerd
) -> None:
    board.configure(docker_settings(dockerd_systemd))
    result = images(agent, board)
    assert result.status == "pass"
    assert result.details["images"] == HUB_IMAGES


def test_missing_images_are_listed_with_pull_commands(
    board: Board, agent: AgentRunner, dockerd_cgroupfs: Dockerd
) -> None:
    board.configure(docker_settings(dockerd_cgroupfs))
    result = images(agent, board)
    assert result.status == "warn"
    assert result.summary == f"3 of 3 images missing: {', '.join(HUB_IMAGES)}"
    assert "  docker pull eclipse-mosquitto:1.6.15" in result.remedy.splitlines()
    assert not dockerd_cgroupfs.has_image("kubeedge/pause:3.6")  # check never pulls


def test_images_follow_version_and_repository(
    board: Board, agent: AgentRunner, dockerd_systemd: Dockerd
) -> None:
    board.configure(docker_settings(dockerd_systemd, kubeedge_version="v1.13.1"))
    assert images(agent, board).details["missing"] == ["kubeedge/installation-package:v1.13.1"]
    board.configure(
        docker_settings(dockerd_systemd, image_repository="registry.local:5000/kubeedge")
    )
    assert images(agent, board).details["missing"] == [
        "registry.local:5000/kubeedge/installation-package:v1.13.0",
        "registry.local:5000/kubeedge/eclipse-mosquitto:1.6.15",
        "registry.local:5000/kubeedge/pause:3.6",
    ]

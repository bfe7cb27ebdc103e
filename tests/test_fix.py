"""kedge-agent fix: each repair for real, then idempotency, dry runs and refusals."""

from __future__ import annotations

import io
import json
import stat
import tarfile
from typing import Any

import pytest

from kedge.kubeedge import join_images
from tests.conftest import HUB_IMAGES, AgentRun, AgentRunner, check_one
from tests.harness.board import Board
from tests.harness.dockerd import Dockerd, api
from tests.harness.registry import Registry
from tests.harness.sntp import SntpServer
from tests.kubeedge_sim.chronyc import OFFSET_FILE

pytestmark = pytest.mark.docker


def fix(agent: AgentRunner, board: Board, *args: str) -> tuple[AgentRun, dict[str, Any]]:
    run = agent(board, "fix", "--yes", "--json", *args)
    return run, json.loads(run.out)


def test_cgroup_driver_fix_merges_daemon_json_and_restarts_docker(
    board: Board, agent: AgentRunner, board_docker: Dockerd
) -> None:
    board.configure({"docker_host": board_docker.socket, "cgroup_driver": "systemd"})
    before = board.path("/etc/docker/daemon.json").read_text()
    assert check_one(agent, board, "cgroup-driver").status == "fail"
    run, doc = fix(agent, board, "--only", "cgroup-driver")
    assert run.rc == 0, run.out + run.err
    assert doc["summary"] == "fixed cgroup-driver (2 changes)"
    assert [(c["action"], c["target"]) for c in doc["changes"]] == [
        ("write", "/etc/docker/daemon.json"),
        ("run", "systemctl restart docker.service"),
    ]
    path = board.path("/etc/docker/daemon.json")
    merged = json.loads(path.read_text())
    assert merged["exec-opts"] == ["native.cgroupdriver=systemd"]
    assert merged["registry-mirrors"] == json.loads(before)["registry-mirrors"]
    assert merged["max-concurrent-downloads"] == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert board.path("/etc/docker/daemon.json.kedge-backup").read_text() == before
    assert board_docker.info()["CgroupDriver"] == "systemd"  # the real daemon restarted
    assert check_one(agent, board, "cgroup-driver").status == "pass"
    again_run, again = fix(agent, board, "--only", "cgroup-driver")
    assert again_run.rc == 0
    assert again["summary"] == "nothing to fix: cgroup-driver already pass"
    assert again["changes"] == []


def test_broken_daemon_json_is_reported_not_replaced(
    board: Board, agent: AgentRunner, board_docker: Dockerd
) -> None:
    board.configure({"docker_host": board_docker.socket, "cgroup_driver": "systemd"})
    broken = '{"registry-mirrors": ["http://m.example"],,}\n'
    board.write("/etc/docker/daemon.json", broken)
    run, doc = fix(agent, board, "--only", "cgroup-driver")
    assert run.rc == 1
    assert doc["ok"] is False
    assert doc["details"]["problems"][0]["problem"].startswith(
        "cannot tell what to fix: needs the docker check"
    )
    assert board.path("/etc/docker/daemon.json").read_text() == broken


def test_dry_run_changes_nothing(board: Board, agent: AgentRunner, board_docker: Dockerd) -> None:
    board.configure({"docker_host": board_docker.socket, "cgroup_driver": "systemd"})
    before = board.path("/etc/docker/daemon.json").read_text()
    run = agent(board, "fix", "--dry-run", "--json", "--only", "cgroup-driver")
    doc = json.loads(run.out)
    assert doc["summary"] == "dry run: would make 2 changes"
    assert [c["done"] for c in doc["changes"]] == [False, False]
    assert "would write /etc/docker/daemon.json" in run.err
    assert board.path("/etc/docker/daemon.json").read_text() == before
    assert board_docker.info()["CgroupDriver"] == "cgroupfs"


def test_fix_without_yes_and_terminal_refuses(board: Board, agent: AgentRunner) -> None:
    run = agent(board, "fix", "--only", "leftovers")
    assert run.rc == 2
    assert "refusing to fix without --yes" in run.err


def test_images_are_pulled_through_the_daemons_mirror(
    board: Board, agent: AgentRunner, board_docker: Dockerd
) -> None:
    run, doc = fix(agent, board, "--only", "images")
    assert run.rc == 0, run.out + run.err
    assert [(c["action"], c["target"]) for c in doc["changes"]] == [
        ("pull", ref) for ref in HUB_IMAGES
    ]
    assert all(board_docker.has_image(ref) for ref in HUB_IMAGES)
    _, again = fix(agent, board, "--only", "images")
    assert again["summary"] == "nothing to fix: images already pass"


def test_images_fall_back_to_registry_mirrors_setting(
    board: Board, agent: AgentRunner, mirror: Registry
) -> None:
    bare = Dockerd().start()  # no daemon-level mirror: Docker Hub itself is unreachable here
    try:
        board.configure({"docker_host": bare.socket, "registry_mirrors": [mirror.address], "pull_retries": 1,
                         "thresholds": {"docker_min_free_mb": 1}})  # fmt: skip
        run, _ = fix(agent, board, "--only", "images")
        assert run.rc == 0, run.out + run.err
        assert (
            f"pulled eclipse-mosquitto:1.6.15 from {mirror.address}/library/eclipse-mosquitto:1.6.15"
            in run.err
        )
        assert all(
            bare.has_image(ref) for ref in HUB_IMAGES
        )  # tagged under the Hub names keadm uses
    finally:
        bare.stop()


def test_image_missing_everywhere_names_image_registry_and_error(
    board: Board, agent: AgentRunner, board_docker: Dockerd, registry: Registry
) -> None:
    repo = f"{registry.address}/nowhere"
    board.configure({"docker_host": board_docker.socket, "image_repository": repo, "pull_retries": 2,
                     "pull_backoff_s": 0, "thresholds": {"docker_min_free_mb": 1}})  # fmt: skip
    run, doc = fix(agent, board, "--only", "images")
    assert run.rc == 1
    problem = doc["details"]["problems"][0]
    assert problem["problem"].startswith(
        f"cannot pull {repo}/installation-package:v1.13.0 from {registry.address}: "
    )
    assert "(attempt 2)" in problem["problem"]
    assert "not found" in problem["problem"] or "manifest unknown" in problem["problem"]
    assert "--from-archive" in problem["remedy"]


def test_images_from_a_docker_save_archive(
    board: Board, agent: AgentRunner, dockerd_systemd: Dockerd, tmp_path: Any
) -> None:
    query = "&".join(f"names={ref}" for ref in HUB_IMAGES)
    status, archive = api(dockerd_systemd.socket, "GET", f"/images/get?{query}")
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:  # a real `docker save` tarball
        assert "manifest.json" in tar.getnames()
    (tmp_path / "images.tar").write_bytes(archive)
    offline = Dockerd().start()  # no mirror at all: an offline site
    try:
        board.configure({"docker_host": offline.socket, "thresholds": {"docker_min_free_mb": 1}})
        run, doc = fix(
            agent, board, "--only", "images", "--from-archive", str(tmp_path / "images.tar")
        )
        assert run.rc == 0, run.out + run.err
        assert [c["action"] for c in doc["changes"]] == ["load"]  # nothing left to pull
        assert all(offline.has_image(ref) for ref in join_images("v1.13.0"))
    finally:
        offline.stop()


def test_clock_fix_steps_the_clock_and_measures_again(board: Board, agent: AgentRunner) -> None:
    board.install_sim("chronyc", "tests.kubeedge_sim.chronyc", "/usr/bin")
    board.write(OFFSET_FILE, "90\n")
    with SntpServer(offset_file=board.path(OFFSET_FILE)) as ntp:
        board.configure({"ntp_servers": [ntp.address]})
        assert check_one(agent, board, "clock").status == "fail"
        run, doc = fix(agent, board, "--only", "clock")
        assert run.rc == 0, run.out + run.err
        assert doc["changes"][0]["target"] == "chronyc makestep"
        assert check_one(agent, board, "clock").status == "pass"
        _, again = fix(agent, board, "--only", "clock")
    assert again["summary"] == "nothing to fix: clock already pass"


def test_conflicts_are_left_alone_unless_forced(board: Board, agent: AgentRunner) -> None:
    board.install_systemd()
    board.write(
        "/etc/systemd/system/k3s.service", "[Service]\nExecStart=/usr/local/bin/k3s server\n"
    )
    board.mkdir("/var/lib/rancher/k3s/server")
    board.write(
        "/var/lib/kedge-sim/systemd.json",
        json.dumps({"units": {"k3s.service": {"active": "active", "enabled": True}}}),
    )
    run, doc = fix(agent, board, "--only", "conflicts")
    assert run.rc == 1
    assert doc["details"]["problems"][0]["problem"] == (
        "another cluster's agent is on this board; kedge does not touch it unless asked"
    )
    assert doc["changes"] == []
    run, doc = fix(agent, board, "--only", "conflicts", "--force-remove-conflicts")
    assert [c["target"] for c in doc["changes"]] == ["systemctl disable --now k3s.service"]
    units = json.loads(board.path("/var/lib/kedge-sim/systemd.json").read_text())["units"]
    assert units["k3s.service"]["active"] == "inactive"
    assert units["k3s.service"]["enabled"] is False
    assert board.path("/var/lib/rancher/k3s/server").is_dir()  # another cluster's data stays
    assert run.rc == 1  # the leftovers of k3s still conflict: said, not hidden
    assert "still failing: conflicts" in doc["summary"]


def test_a_private_repository_still_needs_the_sandbox_image_edgecore_asks_for(
    board: Board, agent: AgentRunner
) -> None:
    """keadm pulls R/pause:3.6, but edgecore's podSandboxImage stays kubeedge/pause:3.6
    (v1alpha2/default.go@v1.13.0): an offline board must hold that name too."""
    from tests.harness.dockerd import tiny_rootfs_tar

    repo = "registry.example/site"
    offline = Dockerd().start()
    try:
        for ref in join_images("v1.13.0", repo):
            offline.import_tar(tiny_rootfs_tar(ref), ref)
        board.configure({"docker_host": offline.socket, "image_repository": repo,
                         "thresholds": {"docker_min_free_mb": 1}})  # fmt: skip
        before = check_one(agent, board, "images")
        assert before.status.value == "warn"
        assert before.summary.startswith("kubeedge/pause:3.6 is missing: edgecore asks docker")
        run, doc = fix(agent, board, "--only", "images")
        assert run.rc == 0, run.out + run.err
        assert [(c["action"], c["target"]) for c in doc["changes"]] == [
            ("tag", "kubeedge/pause:3.6")
        ]
        assert offline.has_image("kubeedge/pause:3.6")
        assert check_one(agent, board, "images").status.value == "pass"
    finally:
        offline.stop()

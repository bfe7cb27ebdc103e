"""Current KubeEdge end to end: kedge-cloud-api installs cloudcore v1.22.2 on a simulated
Kubernetes 1.31 master, a board on a real containerd enrolls and joins, and the upgrade
to v1.23.1 goes cloud first (keadm upgrade cloud), then the board (keadm upgrade edge)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import AgentRunner
from tests.harness.board import Board
from tests.harness.containerd import Containerd, cni_archive, config_v2
from tests.harness.dockerd import Dockerd, seed_registry
from tests.harness.master import MASTER_IP, Master, master
from tests.harness.registry import Registry
from tests.harness.sntp import SntpServer

pytestmark = [
    pytest.mark.netns,
    pytest.mark.docker,
    pytest.mark.skipif(shutil.which("containerd") is None, reason="needs containerd"),
]


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Master]:
    with master(tmp_path) as m:
        m.root.write(
            "/var/lib/kedge-sim/keadm.json", json.dumps({"version": "v1.22.2", "init_wait_s": 5})
        )
        published = m.cluster()["registry_tags"] + ["v1.20.0", "v1.22.2", "v1.23.1"]
        m.edit_cluster(version="v1.31.4", registry_tags=published)
        yield m.start()


def containerd_board(board: Board, registry: Registry, dockerd: Dockerd, ntp: SntpServer,
                     tmp_path: Path, keadm: str) -> Containerd:  # fmt: skip
    seed_registry(dockerd, registry.address, ["kubeedge/pause:3.6",
                  "kubeedge/installation-package:v1.22.2", "kubeedge/installation-package:v1.23.1"])  # fmt: skip
    board.install_systemd()
    board.install_keadm(version=keadm)
    containerd = Containerd(board, tmp_path / "containerd").start(config_v2(
        tmp_path / "containerd", systemd_cgroup=False, mirror=registry.url,
        sandbox_image="kubeedge/pause:3.6"))  # fmt: skip
    board.configure({
        "runtime": "containerd", "remote_runtime_endpoint": containerd.endpoint,
        "ntp_servers": [ntp.address], "join_settle_s": 1, "state_dir": "/var/lib/kedge-agent",
        "thresholds": {"docker_min_free_mb": 1, "cpu_sample_s": 0.1, "max_cpu_used_pct": 100},
    })  # fmt: skip
    return containerd


def enroll_and_join(
    cloud: Master, board: Board, agent: AgentRunner, tmp_path: Path, release: str
) -> None:
    """No KubeEdge setting on the board: the release, cloudcore and token come from enrollment."""
    secret = cloud.cli("secret", "create", "--uses", "1", "--ttl", "1h").stdout.strip()
    enrolled = agent(board, "enroll", "--cloud-api", cloud.url, "--secret", secret)
    assert enrolled.rc == 0, enrolled.out + enrolled.err
    fixed = agent(board, "fix", "--yes", "--cni-archive", str(cni_archive(tmp_path / "cni.tgz")))
    assert fixed.rc == 0, fixed.out + fixed.err
    joined = agent(board, "join", "--yes", "--json")
    assert joined.rc == 0, joined.out + joined.err
    assert f"--kubeedge-version={release}" in json.loads(joined.out)["details"]["keadm_argv"]
    assert node_release(cloud, "board-1") == release


def test_init_enroll_join_on_v1_23_1(
    cloud: Master, board: Board, registry: Registry, dockerd_systemd: Dockerd,
    ntp: SntpServer, agent: AgentRunner, tmp_path: Path,
) -> None:  # fmt: skip
    cloud.root.write(
        "/var/lib/kedge-sim/keadm.json", json.dumps({"version": "v1.23.1", "init_wait_s": 5})
    )
    installed = cloud.cli("init", "--advertise-address", MASTER_IP, "--kubeedge-version", "v1.23.1")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    containerd = containerd_board(board, registry, dockerd_systemd, ntp, tmp_path, "v1.23.1")
    try:
        enroll_and_join(cloud, board, agent, tmp_path, "v1.23.1")
        _, body = cloud.call("GET", "/api/v1/cloudcore")
        assert body["version"] == "v1.23.1"

        # Reset and join again: the Node outlives the reset and v1.23 refuses the name;
        # the enrolled board proves it is that name and has the cloud API delete it.
        assert json.loads(agent(board, "reset", "--yes", "--json").out)["ok"] is True
        assert node_release(cloud, "board-1") == "v1.23.1"
        again = agent(board, "join", "--yes", "--json")
        assert again.rc == 0, again.out + again.err
        assert {"action": "delete", "target": "Node board-1", "detail": "through the cloud API",
                "done": True} in json.loads(again.out)["changes"]  # fmt: skip
        assert node_release(cloud, "board-1") == "v1.23.1"  # registered again by the new edgecore
        forged = {
            "node_name": "board-1",
            "agent_version": "0",
            "proof_at": int(time.time()),
            "proof": "0" * 64,
        }
        status, answer = cloud.call("POST", "/api/v1/forget-node", forged, admin=False)
        assert (status, answer["error"]["code"]) == (401, "not_proven")
    finally:
        board.stop_processes()
        containerd.stop()


def node_release(cloud: Master, name: str) -> str:
    node = next(n for n in cloud.cluster()["nodes"] if n["name"] == name)
    return str(node.get("kubeletVersion", "")).partition("-kubeedge-")[2]


def test_init_enroll_join_then_upgrade_cloud_first_then_the_board(
    cloud: Master, board: Board, registry: Registry, dockerd_systemd: Dockerd,
    ntp: SntpServer, agent: AgentRunner, tmp_path: Path,
) -> None:  # fmt: skip
    installed = cloud.cli("init", "--advertise-address", MASTER_IP, "--kubeedge-version", "v1.22.2")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "--kubeedge-version=v1.22.2" in installed.stdout

    containerd = containerd_board(board, registry, dockerd_systemd, ntp, tmp_path, "v1.22.2")
    try:
        enroll_and_join(cloud, board, agent, tmp_path, "v1.22.2")

        # The board first: refused, the cloud API says cloudcore still runs v1.22.2.
        early = agent(board, "upgrade", "--yes", "--json", "--to", "v1.23.1")
        assert early.rc == 1
        assert json.loads(early.out)["summary"].startswith(
            "cloudcore runs v1.22.2, older than v1.23.1"
        )

        # keadm v1.23.1's init refuses an installed release; kedge upgrades it instead.
        cloud.root.write(
            "/var/lib/kedge-sim/keadm.json", json.dumps({"version": "v1.23.1", "init_wait_s": 5})
        )
        upgraded = cloud.cli(
            "init", "--advertise-address", MASTER_IP, "--kubeedge-version", "v1.23.1"
        )
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        assert "upgrading to v1.23.1 (keadm upgrade cloud)" in upgraded.stdout
        _, body = cloud.call("GET", "/api/v1/cloudcore")
        assert (body["version"], body["available"]) == ("v1.23.1", True)

        run = agent(board, "upgrade", "--yes", "--json")  # the target: what the cloud runs now
        doc = json.loads(run.out)
        assert run.rc == 0, run.out + run.err
        assert (
            doc["summary"]
            == "upgraded edgecore v1.22.2 → v1.23.1; it is active and connected to cloudhub"
        )
        assert node_release(cloud, "board-1") == "v1.23.1"
    finally:
        board.stop_processes()
        containerd.stop()


def test_a_fleet_the_compatibility_rules_forbid_is_refused(cloud: Master) -> None:
    """An edge node two minor releases behind the target, and a skipped minor release."""
    assert (
        cloud.cli(
            "init", "--advertise-address", MASTER_IP, "--kubeedge-version", "v1.22.2"
        ).returncode
        == 0
    )
    with_old_edge = cloud.cluster()["nodes"] + [{
        "name": "rk3000-7", "ip": "", "taints": [], "kubeletVersion": "v1.30.7-kubeedge-v1.21.0",
        "labels": {"node-role.kubernetes.io/edge": ""},
    }]  # fmt: skip
    cloud.edit_cluster(nodes=with_old_edge)
    cloud.root.write(
        "/var/lib/kedge-sim/keadm.json", json.dumps({"version": "v1.23.1", "init_wait_s": 5})
    )
    refused = cloud.cli("init", "--advertise-address", MASTER_IP, "--kubeedge-version", "v1.23.1")
    assert refused.returncode == 2
    assert "rk3000-7 (v1.21.0)" in refused.stderr
    assert "upgrade them first (kedge-agent upgrade)" in refused.stderr
    cloud.edit_cluster(nodes=with_old_edge[:-1])
    cloud.edit_cluster(version="v1.30.2")
    skipped = cloud.cli("init", "--advertise-address", MASTER_IP, "--kubeedge-version", "v1.20.0")
    assert skipped.returncode == 2
    assert "would be a downgrade" in skipped.stderr

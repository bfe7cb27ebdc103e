"""The fresh-board story on current KubeEdge: v1.23.1 on a real containerd (Debian's 1.6),
against the v1.23.1 keadm/edgecore simulator (tests/kubeedge_sim/keadm_cri.py) and a
cloudcore that answers GET /node/<name>. check → fix → check → join → verify → reset,
and the re-join that v1.20's node-name check refuses until the old Node is gone."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import containerd_config
from tests.conftest import AgentRunner, statuses
from tests.harness.board import Board
from tests.harness.containerd import Containerd, cni_archive, config_v2
from tests.harness.cri_dockerd import CriDockerd
from tests.harness.dockerd import Dockerd, api, seed_registry
from tests.harness.registry import Registry
from tests.harness.sntp import SntpServer
from tests.kubeedge_sim.cloudcore import CloudcoreSim
from tests.kubeedge_sim.pki import CloudcorePKI

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(shutil.which("containerd") is None, reason="needs containerd"),
]
VERSION = "v1.23.1"


@pytest.fixture(scope="module")
def seeded(registry: Registry, dockerd_systemd: Dockerd) -> Registry:
    seed_registry(dockerd_systemd, registry.address,
                  [f"kubeedge/installation-package:{VERSION}", "kubeedge/pause:3.6"])  # fmt: skip
    return registry


@pytest.fixture
def cloudcore_v1_23() -> Iterator[CloudcoreSim]:
    with CloudcoreSim(CloudcorePKI.create(["127.0.0.1"]), version=VERSION) as cc:
        yield cc


@pytest.fixture
def fresh(
    board: Board, seeded: Registry, tmp_path: Path, ntp: SntpServer, cloudcore_v1_23: CloudcoreSim
) -> Iterator[tuple[Board, Containerd]]:
    """A board as a team starting today gets it: containerd with SystemdCgroup = true (what
    most install guides tell you to set), no CNI, nothing pulled; keadm v1.23.1."""
    board.install_systemd()
    board.install_keadm(version=VERSION)
    containerd = Containerd(board, tmp_path / "containerd").start(config_v2(
        tmp_path / "containerd", systemd_cgroup=True, mirror=seeded.url,
        sandbox_image="kubeedge/pause:3.6"))  # fmt: skip
    board.configure(settings(containerd, ntp, cloudcore_v1_23))
    yield board, containerd
    board.stop_processes()
    containerd.stop()


def settings(c: Containerd, ntp: SntpServer, cc: CloudcoreSim, **extra: Any) -> dict[str, Any]:
    return settings_for(c.endpoint, ntp, cc, **extra)


def settings_for(endpoint: str, ntp: SntpServer, cc: CloudcoreSim, **extra: Any) -> dict[str, Any]:
    return {
        "node_name": "board-1", "kubeedge_version": VERSION, "runtime": "containerd",
        "remote_runtime_endpoint": endpoint, "cgroup_driver": "cgroupfs",
        "ntp_servers": [ntp.address], "cloudcore": cc.cloudcore,
        "cloudcore_cert_port": cc.cert_port, "token": cc.pki.token(), "join_settle_s": 1,
        "state_dir": "/var/lib/kedge-agent",
        "thresholds": {"docker_min_free_mb": 1, "cpu_sample_s": 0.1, "max_cpu_used_pct": 100},
        **extra,
    }  # fmt: skip


def test_v1_23_1_on_containerd_from_fresh_board_to_joined_and_back(
    fresh: tuple[Board, Containerd], agent: AgentRunner, cloudcore_v1_23: CloudcoreSim,
    tmp_path: Path,
) -> None:  # fmt: skip
    board, containerd = fresh
    first = agent(board, "check", "--json")
    assert first.rc == 1
    found = {k: v for k, v in statuses(first).items() if v not in ("pass", "skip")}
    assert found == {
        "runtime-cgroup": "fail",  # containerd systemd, the join cgroupfs
        "cni": "fail",
        "sandbox-image": "warn",
        "runtime-images": "warn",
    }

    refused = json.loads(agent(board, "join", "--yes", "--json").out)
    assert refused["summary"].startswith("preflight failed: runtime-cgroup")

    archive = cni_archive(tmp_path / "cni-plugins-linux-amd64.tgz")
    fixed = agent(board, "fix", "--yes", "--json", "--cni-archive", str(archive))
    assert fixed.rc == 0, fixed.out + fixed.err
    doc = json.loads(fixed.out)
    assert doc["summary"] == "fixed runtime-cgroup, sandbox-image, runtime-images, cni (10 changes)"
    config = containerd_config.parse(board.path(containerd_config.PATH).read_text())
    assert config.systemd_cgroup is False
    after_fix = statuses(agent(board, "check", "--json"))
    assert after_fix.pop("cni") in ("pass", "warn")  # warn: containerd rereads its CNI dir later
    assert set(after_fix.values()) == {"pass", "skip"}

    joined = agent(board, "join", "--yes", "--json")
    result = json.loads(joined.out)
    assert joined.rc == 0, joined.out + joined.err
    assert result["summary"] == (
        f"joined {cloudcore_v1_23.cloudcore} as board-1; edgecore is active and connected to cloudhub"
    )
    argv = result["details"]["keadm_argv"]
    assert not any(a.startswith(("--runtimetype", "--with-mqtt")) for a in argv)  # unknown in v1.23
    assert f"--remote-runtime-endpoint={containerd.endpoint}" in argv
    assert "--cgroupdriver=cgroupfs" in argv
    assert board.path("/var/lib/kubelet").is_dir()  # v1.20's data directory
    edgecore_yaml = board.path("/etc/kubeedge/config/edgecore.yaml").read_text()
    assert f"edgeCoreVersion: {VERSION}" in edgecore_yaml
    assert cloudcore_v1_23.nodes == {"board-1"}

    reset = agent(board, "reset", "--yes", "--json")
    assert json.loads(reset.out)["ok"] is True
    assert not board.path("/var/lib/kubelet").exists()
    assert statuses(agent(board, "check", "--json", "--only", "leftovers")) == {"leftovers": "pass"}

    # The Node outlives the board's reset; v1.20 on refuses to register the name again.
    again = agent(board, "join", "--yes", "--json")
    assert again.rc == 1
    assert json.loads(again.out)["summary"].startswith("preflight failed: cloudcore")
    past = agent(board, "join", "--yes", "--json", "--ignore", "cloudcore")  # keadm's own refusal
    assert [c["id"] for c in json.loads(past.out)["causes"]] == ["node-already-registered"]
    cloudcore_v1_23.nodes.discard("board-1")  # kubectl delete node board-1
    rejoined = agent(board, "join", "--yes", "--json")
    assert rejoined.rc == 0, rejoined.out + rejoined.err


def test_without_the_fix_keadm_fails_at_copy_resources_and_is_understood(
    fresh: tuple[Board, Containerd], agent: AgentRunner, tmp_path: Path
) -> None:
    """Joining past the runtime-cgroup check: the simulated keadm fails the way runc does
    for containerd's systemd driver without a slice, and kedge names it and cleans up."""
    board, _ = fresh
    archive = cni_archive(tmp_path / "cni.tgz")
    pre = agent(board, "fix", "--yes", "--only", "cni,sandbox-image,runtime-images",
                "--cni-archive", str(archive))  # fmt: skip
    assert pre.rc == 0, pre.out + pre.err
    run = agent(board, "join", "--yes", "--json", "--ignore", "runtime-cgroup")
    doc = json.loads(run.out)
    assert run.rc == 1
    assert [c["id"] for c in doc["causes"]] == ["runtime-cgroup-mismatch"]
    assert "kedge-agent fix --only runtime-cgroup" in doc["causes"][0]["remedy"]
    assert not board.path("/etc/kubeedge").exists()  # cleaned for the retry


def test_an_upgrade_from_v1_22_runs_the_cloud_first_then_the_board(
    board: Board, seeded: Registry, dockerd_systemd: Dockerd, tmp_path: Path, ntp: SntpServer,
    agent: AgentRunner,
) -> None:  # fmt: skip
    """A board joined on v1.22.2 is upgraded in place with keadm upgrade edge: refused
    while cloudcore is older than the target, done once it is not, and not again."""
    seed_registry(dockerd_systemd, seeded.address, ["kubeedge/installation-package:v1.22.2"])
    board.install_systemd()
    board.install_keadm(version="v1.22.2")
    containerd = Containerd(board, tmp_path / "containerd").start(config_v2(
        tmp_path / "containerd", systemd_cgroup=False, mirror=seeded.url,
        sandbox_image="kubeedge/pause:3.6"))  # fmt: skip
    try:
        with CloudcoreSim(CloudcorePKI.create(["127.0.0.1"]), version="v1.22.2") as cc:
            board.configure(settings(containerd, ntp, cc, kubeedge_version="v1.22.2"))
            archive = cni_archive(tmp_path / "cni.tgz")
            assert agent(board, "fix", "--yes", "--cni-archive", str(archive)).rc == 0
            joined = agent(board, "join", "--yes", "--json")
            assert joined.rc == 0, joined.out + joined.err

            board.configure(settings(containerd, ntp, cc, kubeedge_version=VERSION))
            early = agent(board, "upgrade", "--yes", "--json", "--cloud-version", "v1.22.2")
            doc = json.loads(early.out)
            assert (early.rc, doc["changes"]) == (1, [])
            assert doc["summary"] == (
                "cloudcore runs v1.22.2, older than v1.23.1: upgrade the cloud first "
                "(kedge-cloud-api init --kubeedge-version v1.23.1), then the boards"
            )
            assert version_of(board) == "KubeEdge v1.22.2"

            # A killed keadm upgrade left its lock: keadm would refuse every later upgrade.
            board.write("/etc/kubeedge/idempotency_record", "")
            run = agent(board, "upgrade", "--yes", "--json", "--cloud-version", VERSION)
            doc = json.loads(run.out)
            assert run.rc == 0, run.out + run.err
            removed = [(c["action"], c["target"]) for c in doc["changes"]]
            assert ("remove", "/etc/kubeedge/idempotency_record") in removed
            assert not board.path("/etc/kubeedge/idempotency_record").exists()
            assert doc["summary"] == (
                "upgraded edgecore v1.22.2 → v1.23.1; it is active and connected to cloudhub"
            )
            assert doc["details"]["keadm_argv"] == [
                "keadm", "upgrade", "edge", "--toVersion=v1.23.1",
                "--image=kubeedge/installation-package", "--force",
            ]  # fmt: skip
            assert version_of(board) == f"KubeEdge {VERSION}"
            assert cc.events.count("edge node board-1 connected") == 2  # reconnected
            record = json.loads(board.path("/var/lib/kedge-agent/join.json").read_text())
            assert record["kubeedge_version"] == VERSION
            again = agent(board, "upgrade", "--yes", "--json", "--cloud-version", VERSION)
            assert (
                json.loads(again.out)["summary"] == "edgecore already runs v1.23.1: nothing to do"
            )
            back = agent(board, "upgrade", "--yes", "--json", "--to", "v1.22.2",
                         "--cloud-version", VERSION)  # fmt: skip
            assert json.loads(back.out)["summary"].startswith(
                "v1.22.2 is older than the running v1.23.1"
            )
    finally:
        board.stop_processes()
        containerd.stop()


def version_of(board: Board) -> str:
    import subprocess

    done = subprocess.run([str(board.path("/usr/local/bin/edgecore")), "--version"],
                          capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    return done.stdout.strip()


def test_v1_23_1_with_docker_kept_through_cri_dockerd(
    board: Board, seeded: Registry, dockerd_systemd: Dockerd, tmp_path: Path, ntp: SntpServer,
    cloudcore_v1_23: CloudcoreSim, agent: AgentRunner,
) -> None:  # fmt: skip
    """The seed's boards keep docker on v1.23.1 through cri-dockerd (simulated: not in
    Debian) in front of the real dockerd: its pause image comes from its unit, images go
    through docker, docker's cgroup driver is the one that matters."""
    board.install_systemd()
    board.install_keadm(version=VERSION)
    shim = CriDockerd(board, tmp_path / "cri-dockerd", dockerd_systemd.socket,
                      sandbox_image="kubeedge/pause:3.6").start()  # fmt: skip
    pulled = [f"kubeedge/installation-package:{VERSION}", "kubeedge/pause:3.6"]
    try:
        board.configure({
            **settings_for(shim.endpoint, ntp, cloudcore_v1_23), "runtime": "cri-dockerd",
            "docker_host": f"unix://{dockerd_systemd.socket}", "cgroup_driver": "auto",
        })  # fmt: skip
        for ref in pulled:
            dockerd_systemd.remove_image(ref)
        first = agent(board, "check", "--json")
        found = {k: v for k, v in statuses(first).items() if v not in ("pass", "skip")}
        assert found == {"cni": "fail", "sandbox-image": "warn", "runtime-images": "warn"}
        sandbox = first.result("sandbox-image")
        assert sandbox.details["image"] == "kubeedge/pause:3.6"  # from cri-docker.service
        assert first.result("cri").summary.startswith("docker ")
        archive = cni_archive(tmp_path / "cni.tgz")
        fixed = agent(board, "fix", "--yes", "--json", "--cni-archive", str(archive))
        assert fixed.rc == 0, fixed.out + fixed.err
        assert api(dockerd_systemd.socket, "GET", "/images/kubeedge/pause:3.6/json")[0] == 200
        assert set(statuses(agent(board, "check", "--json")).values()) == {"pass", "skip"}

        joined = agent(board, "join", "--yes", "--json")
        doc = json.loads(joined.out)
        assert joined.rc == 0, joined.out + joined.err
        assert f"--remote-runtime-endpoint={shim.endpoint}" in doc["details"]["keadm_argv"]
        assert "--cgroupdriver=systemd" in doc["details"]["keadm_argv"]  # docker's, "auto"
        reset = agent(board, "reset", "--yes", "--json")
        assert json.loads(reset.out)["ok"] is True
    finally:
        board.stop_processes()
        shim.stop()
        for ref in pulled:
            dockerd_systemd.remove_image(ref)

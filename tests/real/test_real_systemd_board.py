"""Issue 26, item 6, on the real binaries: the board shape with systemd as PID 1
(`systemd-nspawn --boot`, tests/harness/booted_edge.py) beside the shape without it
(tests/real/test_real_cloudcore.py). Here keadm's `file /sbin/init` succeeds, keadm
writes edgecore.service and starts it with `sudo systemctl`, and kedge reads and
drives edgecore through that unit."""

from __future__ import annotations

from pathlib import Path

from agent.diagnose import recognise
from tests.harness.booted_edge import booted_edge
from tests.harness.real_kubeedge import HUB, real_cloud
from tests.harness.wait import wait_for
from tests.kubeedge_sim.keadm import UNIT as SIMULATED_V1_13_UNIT
from tests.kubeedge_sim.keadm_cri import UNIT as SIMULATED_UNIT

VERSION = "v1.23.1"


def test_a_systemd_booted_v1_23_1_board_from_the_cgroup_pitfall_to_joined_and_back(
    tmp_path: Path,
) -> None:
    """One board's story: runc on the systemd cgroup driver and the join on cgroupfs (the
    field guide's cgroup pitfall with containerd) — kedge names it before the join, the
    bare keadm join fails in the real words kedge recognises, `fix` makes runc use
    cgroupfs and restarts containerd through the board's systemd; then kedge joins
    through keadm's unit, systemd restarts a killed edgecore, and reset removes it all."""
    with (
        real_cloud(tmp_path, VERSION) as cloud,
        booted_edge(cloud.box, tmp_path / "edge", VERSION, "edge-1", systemd_cgroup=True) as edge,
    ):
        token = cloud.cloudcore.token()
        edge.configure_agent(HUB, token, "edge-1", cgroup_driver="cgroupfs")
        rc, checked, _ = edge.kedge("check", "--only", "runtime-cgroup,join-tools")
        by_id = {c["id"]: c for c in checked["checks"]}
        found, tools = by_id["runtime-cgroup"], by_id["join-tools"]
        assert (rc, found["status"]) == (1, "fail"), found
        assert found["summary"].startswith(
            "containerd's runc uses systemd but the join passes --cgroupdriver=cgroupfs"
        )
        # keadm's `file /sbin/init` succeeds here: it will start edgecore through systemd.
        assert tools["status"] == "pass", tools
        assert tools["details"]["through_systemd"] is True
        assert "sudo" in tools["details"]["tools"]

        rc, out = edge.keadm_join(HUB, token, "edge-1")
        assert rc != 0, out
        assert "runtime-cgroup-mismatch" in [c.id for c in recognise(out)], out
        rc, reset, _ = edge.kedge("reset", "--yes")
        assert rc == 0, reset

        rc, fixed, _ = edge.kedge("fix", "--yes", "--only", "runtime-cgroup")
        assert rc == 0, fixed
        assert (
            "SystemdCgroup = false" in (edge.board.root / "etc/containerd/config.toml").read_text()
        )
        rc, report, _ = edge.kedge("join", "--yes")
        assert rc == 0, report
        assert report["summary"].startswith(f"joined {HUB} as edge-1"), report
        # keadm started edgecore through systemd: kedge had nothing to start.
        assert [c for c in report["changes"] if c["action"] == "start"] == [], report["changes"]
        info = cloud.plane.wait_ready("edge-1")
        assert info["kubeletVersion"].endswith(f"-kubeedge-{VERSION}")
        assert (edge.unit("ActiveState"), edge.unit("UnitFileState")) == ("active", "enabled")
        # The simulator's v1.23.1 keadm writes the same unit (differential, item 3).
        unit = edge.check("cat", edge.unit("FragmentPath"))
        assert unit == SIMULATED_UNIT, unit

        # edgecore killed: keadm's unit restarts it, and kedge's check sees it running.
        first = edge.unit("MainPID")
        edge.check("kill", "-KILL", first)
        wait_for(
            lambda: (
                edge.unit("MainPID") not in ("0", first) and edge.unit("ActiveState") == "active"
            ),
            timeout=60,
            what="systemd to start edgecore again",
            interval=0.5,
        )
        rc, checked, _ = edge.kedge("check", "--only", "edgecore")
        assert (rc, checked["checks"][0]["status"]) == (0, "pass"), checked
        assert edge.unit("NRestarts") != "0"

        rc, reset, _ = edge.kedge("reset", "--yes")
        assert rc == 0, reset
        assert edge.unit("LoadState") == "not-found", reset["changes"]
        assert edge.run("pidof", "edgecore").returncode != 0, "edgecore still runs after reset"
        assert not (edge.board.root / "etc/kubeedge/config").exists()


def test_v1_13_0_on_docker_with_the_systemd_driver_the_field_guides_cgroup_pitfall(
    tmp_path: Path,
) -> None:
    """The field guide's board: KubeEdge v1.13.0 on docker, docker on the systemd cgroup
    driver, systemd as PID 1. With the guide's cgroupfs kedge refuses before the join;
    with "auto" the join follows docker and the Node is Ready. When edgecore's driver
    and docker's part after the join, the real edgecore exits in the words kedge
    recognises, and the checks of the joined board name it."""
    with (
        real_cloud(tmp_path, "v1.13.0") as cloud,
        booted_edge(cloud.box, tmp_path / "edge", "v1.13.0", "edge-1", systemd_cgroup=True) as edge,
    ):
        token = cloud.cloudcore.token()
        edge.configure_agent(HUB, token, "edge-1", cgroup_driver="cgroupfs")
        rc, checked, _ = edge.kedge("check", "--only", "cgroup-driver")
        found = {c["id"]: c for c in checked["checks"]}["cgroup-driver"]
        assert (rc, found["status"]) == (1, "fail"), found
        assert found["summary"].startswith("docker uses systemd but cgroup_driver = cgroupfs")

        edge.configure_agent(HUB, token, "edge-1", cgroup_driver="auto")
        rc, report, _ = edge.kedge("join", "--yes")
        assert rc == 0, report
        # The systemd path: v1.13.0's background log directory trap does not apply.
        assert [c for c in report["changes"] if c["action"] == "start"] == [], report["changes"]
        cloud.plane.wait_ready("edge-1")
        assert edge.check("cat", edge.unit("FragmentPath")) == SIMULATED_V1_13_UNIT

        yaml = edge.board.root / "etc/kubeedge/config/edgecore.yaml"
        yaml.write_text(yaml.read_text().replace("cgroupDriver: systemd", "cgroupDriver: cgroupfs"))
        edge.check("systemctl", "restart", "edgecore")
        words = (
            'kubelet cgroup driver: "cgroupfs" is different from docker cgroup driver: "systemd"'
        )
        wait_for(
            lambda: words in edge.board.journal("edgecore.service"),
            timeout=60,
            what="edgecore to refuse docker's driver",
        )
        journal = edge.board.journal("edgecore.service")
        assert "cgroup-driver-mismatch" in [c.id for c in recognise(journal)]
        rc, checked, _ = edge.kedge("check", "--only", "cgroup-driver,edgecore")
        by_id = {c["id"]: c for c in checked["checks"]}
        assert by_id["cgroup-driver"]["summary"].startswith(
            "edgecore.yaml says cgroupDriver: cgroupfs but docker uses systemd"
        )
        assert by_id["edgecore"]["details"]["causes"] == ["cgroup-driver-mismatch"], by_id

        rc, reset, _ = edge.kedge("reset", "--yes")
        assert rc == 0, reset
        assert edge.unit("LoadState") == "not-found", reset["changes"]

"""Real KubeEdge in the loop (issue 26), the control plane: Debian's etcd, the real
kube-apiserver and a real cloudcore of each release in a private sandbox
(tests/harness/sandbox.py, control_plane.py). cloudcore makes its CA, its certificate
and the join token itself; kedge reads that token as boards will be handed it."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from kedge.token import parse_token
from tests.harness.control_plane import Cloudcore, ControlPlane
from tests.harness.real_binaries import RELEASES
from tests.harness.real_kubeedge import real_kubeedge
from tests.harness.sandbox import ADDRESS, sandbox
from tests.harness.wait import wait_for


@pytest.mark.parametrize("version", RELEASES)
def test_a_real_cloudcore_issues_the_token_kedge_reads(tmp_path: Path, version: str) -> None:
    with sandbox(tmp_path / "box") as box:
        plane = ControlPlane(box, tmp_path / "plane").start()
        plane.install_kubeedge_resources(version)
        cloudcore = Cloudcore(box, plane, version, tmp_path / "cloudcore").start()
        token = cloudcore.token()  # keadm gettoken, the real one
        stored = plane.get("/api/v1/namespaces/kubeedge/secrets/tokensecret")
        assert base64.b64decode(stored["data"]["tokendata"]).decode() == token
        parsed = parse_token(token)  # what kedge checks before a board joins with it
        assert parsed.expires_at is not None
        for secret in ("casecret", "cloudcoresecret"):
            assert plane.get(f"/api/v1/namespaces/kubeedge/secrets/{secret}") is not None
        listening = box.check("ss", "-ltn")
        assert ":10000 " in listening
        assert ":10002 " in listening


def test_a_bare_keadm_join_of_v1_23_1_on_containerd_makes_a_ready_node(tmp_path: Path) -> None:
    """The baseline every kedge story on real binaries is held to: a real keadm join,
    a real edgecore fetching its certificates from the real cloudcore, Node Ready."""
    with real_kubeedge(tmp_path, "v1.23.1") as kube:
        plane, cloudcore, edge = kube.plane, kube.cloudcore, kube.edge
        rc, out, _ = edge.keadm_join(f"{ADDRESS}:10000", cloudcore.token(), "edge-1")
        assert rc == 0, out
        assert "Install Complete!" in out
        info = plane.wait_ready("edge-1")
        assert info["kubeletVersion"].endswith("-kubeedge-v1.23.1")
        assert info["containerRuntimeVersion"].startswith("containerd://")


def test_keadm_starts_edgecore_itself_without_sudo_when_file_fails_as_kedge_predicts(
    tmp_path: Path,
) -> None:
    """join-tools (issue 26, item 4) held to the real keadm: where `file /sbin/init`
    fails, kedge says keadm starts edgecore itself and needs no sudo — and the real
    keadm join then succeeds on a machine without sudo."""
    with real_kubeedge(tmp_path, "v1.23.1") as kube:
        box, cloudcore, edge = kube.box, kube.cloudcore, kube.edge
        token = cloudcore.token()
        verdicts = edge.kedge_check(f"{ADDRESS}:10000", token, "edge-1")
        # containerd here reads Debian's plugins from /usr/lib/cni (its bin_dir): kedge
        # looks where the runtime looks, and the join below makes a Ready node with them.
        cni = verdicts["cni"]
        assert cni["status"] == "pass", cni
        assert cni["details"]["bin_dir"] == "/usr/lib/cni"
        tools = verdicts["join-tools"]
        assert tools["status"] == "pass", tools
        assert tools["details"]["through_systemd"] is False
        assert "sudo" not in tools["details"]["tools"]
        assert box.run("sh", "-c", "command -v sudo").returncode != 0, "this test needs no sudo"
        rc, out, _ = edge.keadm_join(f"{ADDRESS}:10000", token, "edge-1")
        assert rc == 0, out
        assert "KubeEdge edgecore is running, For logs visit: /var/log/kubeedge/edgecore.log" in out


@pytest.mark.parametrize("version", RELEASES)
def test_kedge_joins_a_real_board_and_resets_it(tmp_path: Path, version: str) -> None:
    """The story through kedge itself on the real binaries (v1.13.0 on docker, v1.23.1 on
    containerd): join (keadm takes its background path: no systemd runs here — on v1.13.0
    that path runs nothing until kedge repairs it), Node Ready, join again (nothing to
    do), reset, a clean board again."""
    with real_kubeedge(tmp_path, version) as kube:
        box, plane, cloudcore, edge = kube.box, kube.plane, kube.cloudcore, kube.edge
        edge.configure_agent(f"{ADDRESS}:10000", cloudcore.token(), "edge-1")
        rc, report, _ = edge.kedge("join", "--yes")
        assert rc == 0, report
        assert report["summary"].startswith(f"joined {ADDRESS}:10000 as edge-1"), report
        info = plane.wait_ready("edge-1")
        assert info["kubeletVersion"].endswith(f"-kubeedge-{version}")
        repaired = [c for c in report["changes"] if c["action"] == "start"]
        assert bool(repaired) == (version == "v1.13.0"), report["changes"]
        rc, again, _ = edge.kedge("join", "--yes")
        assert (rc, again["summary"]) == (
            0,
            f"already joined to {ADDRESS}:10000 as edge-1: nothing to do",
        )
        rc, reset, _ = edge.kedge("reset", "--yes")
        assert rc == 0, reset
        assert box.run("pidof", "edgecore").returncode != 0, "edgecore still runs after reset"
        assert not (box.work / "root/etc/kubeedge/config").exists()


def test_a_killed_edgecore_is_named_and_started_again_ready_unknown_ready(tmp_path: Path) -> None:
    """edgecore killed on a joined v1.23.1 board (keadm started it in the background:
    nothing restarts it): the node lifecycle controller marks the Node Unknown, kedge's
    edgecore check names it, `fix --only edgecore` starts it as keadm did, Ready again."""
    with real_kubeedge(tmp_path, "v1.23.1", node_lifecycle=True) as kube:
        box, plane, cloudcore, edge = kube.box, kube.plane, kube.cloudcore, kube.edge
        edge.configure_agent(f"{ADDRESS}:10000", cloudcore.token(), "edge-1")
        rc, report, _ = edge.kedge("join", "--yes")
        assert rc == 0, report
        plane.wait_ready("edge-1")
        box.check("pkill", "-KILL", "-x", "edgecore")
        wait_for(lambda: plane.ready_status("edge-1") == "Unknown", timeout=120,
                 what="Node edge-1 Unknown", interval=1)  # fmt: skip
        rc, checked, _ = edge.kedge("check", "--only", "edgecore")
        (found,) = checked["checks"]
        assert (rc, found["status"]) == (1, "fail"), found
        assert found["summary"].startswith(
            f"joined to {ADDRESS}:10000 as edge-1, but edgecore does not run"
        )
        rc, fixed, _ = edge.kedge("fix", "--yes", "--only", "edgecore")
        assert rc == 0, fixed
        assert [(c["action"], c["target"]) for c in fixed["changes"]] == [("start", "edgecore")]
        plane.wait_ready("edge-1")
        rc, again, _ = edge.kedge("check", "--only", "edgecore")
        assert (rc, again["checks"][0]["status"]) == (0, "pass")

"""kedge-cloud-api against a real control plane and a real v1.23.1 board (issue 26,
item 2): `verify` runs its pod on the board (an image made here, imported into the
board's containerd), and `remove` deletes the Node so that a board whose name the
cluster still holds — KubeEdge's v1.20+ node-exists refusal — joins again.

kube-scheduler is not among the binaries: a stand-in binds the verify pod to the Node
its nodeSelector names, as the scheduler would (tests/harness/real_cloud_api.py).
Deployments, ReplicaSets and the namespace's ServiceAccount are made by the real
kube-controller-manager."""

from __future__ import annotations

import json
from pathlib import Path

from tests.harness.real_cloud_api import scheduler_stand_in, start_cloud_api
from tests.harness.real_edge import PROBE_IMAGE, probe_image
from tests.harness.real_kubeedge import HUB, real_kubeedge


def test_verify_runs_its_pod_on_a_real_board_and_remove_frees_its_name(tmp_path: Path) -> None:
    with real_kubeedge(tmp_path, "v1.23.1", workloads=True) as kube:
        box, plane, cloudcore, edge = kube.box, kube.plane, kube.cloudcore, kube.edge
        edge.import_image("probe", probe_image())
        api = start_cloud_api(box, plane, tmp_path / "api")
        edge.configure_agent(HUB, cloudcore.token(), "edge-1")
        rc, report, _ = edge.kedge("join", "--yes")
        assert rc == 0, report
        plane.wait_ready("edge-1")

        with scheduler_stand_in(plane):
            rc, answer = api.cli("verify", "--image", PROBE_IMAGE, "--timeout", "120")
        assert rc == 0, json.dumps(answer, indent=1)
        assert answer["result"]["nodes"] == {"edge-1": {"result": "running", "reason": ""}}
        assert plane.get("/apis/apps/v1/namespaces/default/deployments")["items"] == []

        # The board reset; its Node stays, and v1.20+ refuses to register it again.
        rc, reset, _ = edge.kedge("reset", "--yes")
        assert rc == 0, reset
        taken = edge.kedge_check(HUB, cloudcore.token(), "edge-1")["cloudcore"]
        assert taken["status"] == "fail"
        assert "cloudcore answers HTTP 200 for node edge-1" in taken["summary"]
        assert "kedge-cloud-api remove edge-1" in taken["remedy"], taken

        rc, removed = api.cli("remove", "edge-1", "--yes")
        assert rc == 0, removed
        assert removed["kubernetes_node_deleted"] is True, removed
        assert plane.get("/api/v1/nodes/edge-1") is None
        free = edge.kedge_check(HUB, cloudcore.token(), "edge-1")["cloudcore"]
        assert free["status"] == "pass", free
        rc, report, _ = edge.kedge("join", "--yes")
        assert rc == 0, report
        plane.wait_ready("edge-1")

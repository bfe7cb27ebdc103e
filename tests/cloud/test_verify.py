"""POST /api/v1/verify on the simulated master: the seed guide's nginx on every Ready
edge node, reported per board, and nothing left behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.master import Master, master

pytestmark = pytest.mark.netns


def edge(name: str, **extra: object) -> dict[str, object]:
    return {"name": name, "ip": "", "taints": [], "ready": True, "labels": {
        "node-role.kubernetes.io/edge": "", "node-role.kubernetes.io/agent": ""}, **extra}  # fmt: skip


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Master]:
    with master(tmp_path) as m:
        yield m.start()


def test_verify_reports_each_board_and_cleans_up(cloud: Master) -> None:
    nodes = cloud.cluster()["nodes"]
    nodes += [
        edge("rk3000-1"),
        edge("rk3000-2"),
        edge("rk3000-3", pod_problem={"reason": "ErrImagePull", "message":
             'rpc error: code = Unknown desc = Error response from daemon: Get "https://registry-1.docker.io/v2/": '
             "dial tcp: lookup registry-1.docker.io: no such host"}),
        edge("rk3000-4", ready=False, reason="NodeStatusUnknown"),
    ]  # fmt: skip
    cloud.edit_cluster(nodes=nodes)
    assert cloud.call("GET", "/api/v1/verify")[0] == 404  # none has run yet
    status, body = cloud.call("POST", "/api/v1/verify", {"timeout_s": 5})
    assert status == 202, body
    job = cloud.wait_job(body["job"]["id"])
    assert job["state"] == "succeeded", (job["error"], job["lines"][-5:])
    result = job["result"]
    assert (result["image"], result["ok"], result["running"]) == ("nginx:1.14.2", False, 2)
    assert result["nodes"]["rk3000-1"] == {"result": "running", "reason": ""}
    assert result["nodes"]["rk3000-3"]["result"] == "pending"
    assert result["nodes"]["rk3000-3"]["reason"].startswith("ErrImagePull: rpc error")
    assert "rk3000-4" not in result["nodes"]  # not Ready: not asked
    assert cloud.cluster()["workloads"] == {}  # the check removed what it made
    lines = [entry["line"] for entry in job["lines"]]
    assert "3 Ready edge nodes: rk3000-1, rk3000-2, rk3000-3" in lines
    status, kept = cloud.call("GET", "/api/v1/verify")  # what the dashboard shows
    assert status == 200
    assert (kept["job"], kept["running"], kept["nodes"]) == (body["job"]["id"], 2, result["nodes"])
    assert kept["started_at"] <= kept["finished_at"]


def test_the_kubernetes_view_lists_each_boards_pods(cloud: Master) -> None:
    nodes = cloud.cluster()["nodes"]
    web = {"namespace": "default", "name": "nginx-6799fc88d8-4x2lp", "phase": "Running"}
    stuck = {"namespace": "default", "name": "nginx-6799fc88d8-9kq7z", "phase": "Pending",
             "reason": "ImagePullBackOff"}  # fmt: skip
    nodes += [edge("rk3000-1", pods=[web, stuck]), edge("rk3000-2")]
    cloud.edit_cluster(nodes=nodes)
    status, page = cloud.call("GET", "/api/v1/nodes?refresh=true")
    assert status == 200, page
    rows = {row["node"]: row for row in page["items"]}
    assert (rows["rk3000-1"]["pods_total"], rows["rk3000-1"]["pods_running"]) == (2, 1)
    assert (rows["rk3000-2"]["pods_total"], rows["rk3000-2"]["pods_running"]) == (0, 0)
    status, detail = cloud.call("GET", "/api/v1/nodes/rk3000-1")
    assert status == 200
    assert detail["pods"] == [{**web, "reason": ""}, stuck]


def test_verify_without_a_ready_edge_node_says_so(cloud: Master) -> None:
    status, body = cloud.call("POST", "/api/v1/verify", {})
    assert status == 202
    job = cloud.wait_job(body["job"]["id"])
    assert (job["state"], job["error"]["message"]) == (
        "failed", "no edge node is Ready: join a board first (kedge-agent join)")  # fmt: skip


def test_the_cli_verb_prints_each_board_and_fails_when_one_did_not_run(cloud: Master) -> None:
    nodes = cloud.cluster()["nodes"]
    backoff = {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "{image}"'}
    nodes += [edge("rk3000-1"), edge("rk3000-2", pod_problem=backoff)]
    cloud.edit_cluster(nodes=nodes)
    out = cloud.cli("verify", "--timeout", "5")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "  rk3000-1: running" in out.stdout
    assert (
        '  rk3000-2: pending — ImagePullBackOff: Back-off pulling image "nginx:1.14.2"'
        in out.stdout
    )
    listed = cloud.cli("nodes")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].startswith("BOARD")
    assert any(
        line.startswith("rk3000-1 ") and "Ready" in line for line in listed.stdout.splitlines()
    )


def test_a_node_taken_out_leaves_kubernetes(cloud: Master) -> None:
    cloud.edit_cluster(nodes=[*cloud.cluster()["nodes"], edge("rk3000-9")])
    status, done = cloud.call("DELETE", "/api/v1/nodes/rk3000-9")
    assert (status, done["kubernetes_node_deleted"], done["reset"]) == (200, True, None)
    assert "rk3000-9" not in [n["name"] for n in cloud.cluster()["nodes"]]
    again = cloud.call("DELETE", "/api/v1/nodes/rk3000-9")[1]
    assert again["kubernetes_node_deleted"] is False
    refused = cloud.call("DELETE", "/api/v1/nodes/rk3000-9?reset=true")
    assert (refused[0], refused[1]["error"]["code"]) == (409, "no_broker")

"""The whole path without a human: a fresh board with the field story's problems goes
check → fix → check → join → verified, and reset brings it back."""

from __future__ import annotations

import json

import pytest

from tests.conftest import AgentRunner, statuses
from tests.harness.board import Board
from tests.harness.dockerd import Dockerd
from tests.harness.sntp import SntpServer
from tests.kubeedge_sim.chronyc import OFFSET_FILE
from tests.kubeedge_sim.cloudcore import CloudcoreSim

pytestmark = pytest.mark.docker


def test_fresh_board_to_ready_node_and_back(
    board: Board, agent: AgentRunner, board_docker: Dockerd, cloudcore: CloudcoreSim
) -> None:
    board.install_sim("chronyc", "tests.kubeedge_sim.chronyc", "/usr/bin")
    board.write(OFFSET_FILE, "-95\n")  # the board's clock runs 95 s fast
    board.mkdir("/etc/kubeedge/config")  # an earlier attempt died after keadm's step 3
    with SntpServer(offset_file=board.path(OFFSET_FILE)) as ntp:
        board.configure({
            "docker_host": board_docker.socket, "ntp_servers": [ntp.address],
            "cloudcore": cloudcore.cloudcore, "cloudcore_cert_port": cloudcore.cert_port,
            "token": cloudcore.pki.token(), "cgroup_driver": "systemd", "join_settle_s": 1,
            "thresholds": {"docker_min_free_mb": 1, "cpu_sample_s": 0.1, "max_cpu_used_pct": 100},
        })  # fmt: skip
        first = agent(board, "check", "--json")
        assert first.rc == 1
        found = {k: v for k, v in statuses(first).items() if v not in ("pass", "skip")}
        assert found == {
            "clock": "fail",
            "cgroup-driver": "fail",
            "images": "warn",
            "kubeedge-version": "warn",  # v1.13 is unmaintained (the way up in its remedy)
            "leftovers": "fail",
        }

        refused = json.loads(agent(board, "join", "--yes", "--json").out)
        assert refused["summary"].startswith("preflight failed: clock")

        fixed = agent(board, "fix", "--yes", "--json")
        doc = json.loads(fixed.out)
        assert fixed.rc == 0, fixed.out + fixed.err
        assert doc["summary"] == "fixed clock, cgroup-driver, images, leftovers (7 changes)"
        after_fix = statuses(agent(board, "check", "--json"))
        assert after_fix.pop("kubeedge-version") == "warn"
        assert set(after_fix.values()) == {"pass", "skip"}  # skipped: the CRI runtime's checks
        assert json.loads(agent(board, "fix", "--yes", "--json").out)["changes"] == []

        joined = agent(board, "join", "--yes", "--json")
        result = json.loads(joined.out)
        assert joined.rc == 0, joined.out + joined.err
        assert (
            result["summary"]
            == f"joined {cloudcore.cloudcore} as board-1; edgecore is active and connected to cloudhub"
        )
        assert "--cgroupdriver=systemd" in result["details"]["keadm_argv"]

        reset = agent(board, "reset", "--yes", "--json")
        assert json.loads(reset.out)["ok"] is True
        after = statuses(agent(board, "check", "--json", "--only", "leftovers"))
    assert after == {"leftovers": "pass"}

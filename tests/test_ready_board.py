"""The whole preflight on a board where everything is in order."""

from __future__ import annotations

from tests.conftest import AgentRunner, dump, statuses
from tests.harness.board import Board


def test_every_check_passes_on_a_ready_board(ready_board: Board, agent: AgentRunner) -> None:
    run = agent(ready_board, "check", "--json")
    got = statuses(run)
    # The seed's v1.13 works, and is no longer maintained: the one warning, with the way up.
    assert got.pop("kubeedge-version") == "warn", dump(run)
    # A docker board: the CRI runtime's checks have nothing to look at.
    cri = ("cri", "runtime-cgroup", "sandbox-image", "runtime-images", "cni")
    assert [got.pop(c) for c in cri] == ["skip"] * len(cri)
    assert got.pop("edgecore") == "skip", dump(run)  # not joined: nothing runs it yet
    assert set(got.values()) == {"pass"}, dump(run)
    report = run.report()
    assert report.ok
    assert run.rc == 0
    assert report.node == "board-1"
    assert report.kubeedge_version == "v1.13.0"
    assert len(report.checks) == 22

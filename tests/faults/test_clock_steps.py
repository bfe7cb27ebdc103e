"""The board's wall clock stepped backwards and forwards under a running daemon.

The step is made for the daemon's process only, with libfaketime (Debian's faketime:
LD_PRELOAD, an offset read from a file at every clock call, the monotonic clock left
alone, as a real step leaves it); the machine's clock is never touched. Reports keep
their pace and their order (the report loop and the spool run on the monotonic clock
and on sequence numbers), and a command's lifetime is judged against the board's clock
as it is now, with the stated skew allowance.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.harness.agentd import Agentd
from tests.harness.board import Board
from tests.harness.mosquitto import Mosquitto, Recorder
from tests.harness.sealing import sealed
from tests.harness.wait import wait_for
from tests.test_daemon import broker, configured, healths, recorder

pytestmark = [pytest.mark.faults, pytest.mark.docker]
__all__ = ["broker", "configured", "recorder"]  # fixtures shared with test_daemon
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
CMD, RESULT = "kedge/board-1/cmd", "kedge/board-1/cmd/result"


def command(cid: str) -> str:
    """A ping issued now by the sender's (this machine's, correct) clock, for 60 s."""
    now = datetime.now(UTC)
    return sealed({"id": cid, "action": "ping", "issued_at": now.isoformat(),
                   "expires_at": (now + timedelta(seconds=60)).isoformat()})  # fmt: skip


def test_reports_order_and_command_lifetimes_survive_clock_steps(
    configured: Board, broker: Mosquitto, recorder: Recorder,
    start_daemon: Callable[..., Agentd], tmp_path: Path,
) -> None:  # fmt: skip
    if not LIBFAKETIME.exists():
        pytest.skip("needs Debian's faketime (`make test` installs it)")
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    start_daemon({"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(offset),
                  "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"})  # fmt: skip

    def reports_after(n: int) -> bool:
        return len(healths(recorder)) >= n

    def answer(cid: str) -> dict[str, str]:
        wait_for(lambda: any(r["id"] == cid for r in recorder.json_on(RESULT)), timeout=30,
                 what=f"the answer to {cid}")  # fmt: skip
        return next(r for r in recorder.json_on(RESULT) if r["id"] == cid)

    wait_for(lambda: reports_after(3), timeout=30, what="reports")
    assert answer_of(recorder, "before", answer)["status"] == "done"

    offset.write_text("-1h\n")  # the board's clock steps back an hour
    count = len(healths(recorder))
    wait_for(lambda: reports_after(count + 5), timeout=30, what="reports after the backward step")
    stamps = [h.timestamp for h in healths(recorder)]
    assert stamps[-1] < stamps[count - 1] - timedelta(minutes=50), (
        "the reports carry the board's time"
    )
    behind = answer_of(recorder, "behind", answer)
    assert behind["status"] == "rejected"
    assert "is in the future" in behind["reason"]
    assert "allowance 300 s" in behind["reason"]

    offset.write_text("+2h\n")  # and forward two
    count = len(healths(recorder))
    wait_for(lambda: reports_after(count + 5), timeout=30, what="reports after the forward step")
    ahead = answer_of(recorder, "ahead", answer)
    assert (ahead["status"], ahead["reason"][:11]) == ("rejected", "expired at ")

    offset.write_text("+0\n")
    count = len(healths(recorder))
    wait_for(lambda: reports_after(count + 3), timeout=30, what="reports after the clock is right")
    assert answer_of(recorder, "after", answer)["status"] == "done"

    broker.stop()  # steps while the link is down: the spool keeps queue order, not time order
    for step in ("-3h", "+5h", "+0"):
        offset.write_text(f"{step}\n")
    broker.start()
    again = Recorder(broker, "kedge/board-1/health")
    try:
        wait_for(lambda: any(not h.replayed for h in healths(again)), timeout=60,
                 what="live reports after the outage")  # fmt: skip
        seqs = [h.seq for h in healths(again)]  # one subscriber: the first may reconnect too
    finally:
        again.close()
    assert seqs == sorted(seqs)
    assert len(seqs) == len(set(seqs))


def answer_of(
    recorder: Recorder, cid: str, answer: Callable[[str], dict[str, str]]
) -> dict[str, str]:
    recorder.publish(CMD, command(cid))
    return answer(cid)

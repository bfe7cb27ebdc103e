"""Replay that does not rest on the board's clock (issue 25, finding 7): command expiry
and the memory of ids used to be all that stopped a captured command from running again,
so a board that booted with its clock behind accepted one captured earlier. Every sealed
command now carries the cloud API's per-board sequence, which the board keeps on disk
(the spool's database) and never accepts twice or lower."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.remote import CommandRunner
from agent.spool import Spool
from kedge import command_auth
from kedge.wire import CommandResult, RemoteCommand
from tests.harness.sealing import TEST_COMMAND_KEY, sealed

pytestmark = pytest.mark.faults
ISSUED = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


async def pong(command: RemoteCommand) -> dict[str, Any]:
    return {"pong": True}


def runner(spool: Spool, clock: datetime, key: str = TEST_COMMAND_KEY) -> CommandRunner:
    return CommandRunner({"ping": pong}, [], spool.remember_command, clock=lambda: clock,
                         node=lambda: "board-1", key=lambda: key, sequence=spool.advance_sequence)  # fmt: skip


def ping(cid: str, seq: int | None) -> bytes:
    body = {"id": cid, "action": "ping", "issued_at": ISSUED.isoformat(),
            "expires_at": (ISSUED + timedelta(minutes=10)).isoformat(), "seq": seq}  # fmt: skip
    if seq is None:
        command = command_auth.seal(
            RemoteCommand.model_validate({k: v for k, v in body.items() if k != "seq"}),
            "board-1",
            TEST_COMMAND_KEY,
        )
        return command.to_json().encode()
    return sealed(body).encode()


async def test_a_captured_command_does_not_run_again_whatever_the_clock(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", max_messages=100, max_bytes=1 << 20)
    now = ISSUED + timedelta(minutes=1)
    first = await runner(spool, now).execute(ping("a", 41))
    assert first.status == "done"
    assert (await runner(spool, now).execute(ping("b", 42))).status == "done"
    # Days later the board restarts with its clock back near the time of capture: to it a
    # captured command has not expired, and its id is long out of the id memory (here:
    # ids it never saw stand for that).
    spool.close()
    again = Spool(tmp_path / "spool.db", max_messages=100, max_bytes=1 << 20)
    behind = ISSUED + timedelta(minutes=2)
    replayed: CommandResult = await runner(again, behind).execute(ping("c", 41))
    assert replayed.status == "rejected"
    assert replayed.reason.startswith("replayed: sequence 41 is not above the last")
    assert (await runner(again, behind).execute(ping("d", 42))).status == "rejected"
    assert (await runner(again, behind).execute(ping("e", 43))).status == "done"
    again.close()


async def test_a_command_without_a_sequence_is_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.db", max_messages=100, max_bytes=1 << 20)
    result = await runner(spool, ISSUED).execute(ping("a", None))
    assert result.status == "rejected"
    assert result.reason.startswith("no sequence: commands must carry the cloud API's sequence")
    spool.close()


async def test_a_new_key_starts_a_new_sequence(tmp_path: Path) -> None:
    """A board enrolled again (a new key) takes the cloud's sequence from wherever it is."""
    spool = Spool(tmp_path / "spool.db", max_messages=100, max_bytes=1 << 20)
    assert spool.advance_sequence(command_auth.key_id(TEST_COMMAND_KEY), 1000)
    other = command_auth.new_key()
    assert spool.advance_sequence(command_auth.key_id(other), 1)
    assert not spool.advance_sequence(command_auth.key_id(TEST_COMMAND_KEY), 999)
    spool.close()

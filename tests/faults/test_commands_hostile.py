"""Remote commands from a hostile or careless sender: every one is answered, none is
echoed at length, none runs twice, out of its lifetime, or beside another board-wide
action (agent/remote.py; the daemon's side is in test_daemon_faults.py)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from agent.checks import CHECKS
from agent.remote import MAX_COMMAND_BYTES, CommandRunner
from kedge import command_auth
from kedge.wire import CommandResult, RemoteCommand
from tests.harness.sealing import TEST_COMMAND_KEY, sealed

pytestmark = pytest.mark.faults
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def command(cid: str = "c-1", action: str = "ping", *, issued: timedelta = timedelta(0),
            lifetime: float = 60, **fields: Any) -> bytes:  # fmt: skip
    body = {"id": cid, "action": action, "issued_at": (NOW + issued).isoformat(),
            "expires_at": (NOW + issued + timedelta(seconds=lifetime)).isoformat(), **fields}  # fmt: skip
    try:
        return sealed(body).encode()  # as the cloud API sends it
    except ValidationError:
        return json.dumps(body).encode()  # not a command at all: the board says why


def runner(*, allowed: tuple[str, ...] = (), gate: asyncio.Event | None = None) -> CommandRunner:
    seen: set[str] = set()

    def remember(cid: str) -> bool:
        if cid in seen:
            return False
        seen.add(cid)
        return True

    async def handler(cmd: RemoteCommand) -> dict[str, Any]:
        if gate is not None:
            await gate.wait()
        return {"summary": f"{cmd.action} ran"}

    handlers = {a: handler for a in ("ping", "check", "fix", "join", "reset", "upgrade")}
    return CommandRunner(handlers, list(allowed), remember, known_checks=list(CHECKS), clock=lambda: NOW,
                         node=lambda: "board-1", key=lambda: TEST_COMMAND_KEY)  # fmt: skip


async def result(payload: bytes, r: CommandRunner | None = None) -> CommandResult:
    return await (r or runner()).execute(payload)


async def test_an_oversize_command_is_rejected_unread_and_not_echoed() -> None:
    huge = command(action="x" * 100_000_000)
    answer = await result(huge)
    assert answer.status == "rejected"
    assert answer.reason == f"command too large: {len(huge)} bytes (limit {MAX_COMMAND_BYTES})"
    assert (answer.id, answer.action) == (None, None)
    assert len(answer.to_json()) < 300


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"[" * 10_000, "malformed command: JSON nested too deeply"),
        (
            b'{"id": "c", "args": ' + b'{"a": ' * 2000 + b"1" + b"}" * 2000 + b"}",
            "malformed command",
        ),
        (b"\xff\xfe", "malformed command: not JSON"),
        (b'{"id": "c-1", "n": ' + b"9" * 5000 + b"}", "malformed command: not JSON"),
    ],
)
async def test_unparseable_commands_get_an_answer(payload: bytes, reason: str) -> None:
    answer = await result(payload)
    assert answer.status == "rejected"
    assert answer.reason.startswith(reason)


async def test_naive_times_are_rejected_not_crashed() -> None:
    body = json.loads(command())
    body["issued_at"], body["expires_at"] = "2030-01-01T12:00:00", "2030-01-01T12:01:00"
    answer = await result(json.dumps(body).encode())
    assert (answer.id, answer.status) == ("c-1", "rejected")
    assert answer.reason.startswith("malformed command: issued_at: Input should have timezone info")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (command(lifetime=10**9), "expires_at is more than 3600 s after issued_at"),
        (
            command(issued=timedelta(days=365)),
            "issued_at 2031-01-01T12:00:00+00:00 is in the future",
        ),
        (command(issued=timedelta(seconds=-120)), "expired at 2030-01-01T11:59:00+00:00"),
        (command(action="check", args={"only": "clock"}), "args.only must be a list of check ids"),
        (command(action="check", args={"only": ["nope"]}), "args.only: unknown check id 'nope'"),
        (command(action="check", args={"bogus": 1}), "unknown args for check: bogus"),
        (command(action="fix", args={"dry_run": "yes"}), "args.dry_run must be true or false"),
        (command(action="x" * 65), "malformed command: action: String should have at most 64"),
        (
            command(action="upgrade", args={"to": "v1.23.1; rm -rf /"}),
            "args.to must be a KubeEdge release like v1.23.1",
        ),
        (
            command(action="upgrade", args={"cloud_version": ["v1.23.1"]}),
            "args.cloud_version must be a KubeEdge release",
        ),
        (
            command(action="upgrade", args={"to": "v1.23.1", "cloud_version": "v1.23.1"}),
            "upgrade is not allowed remotely on this board",
        ),
    ],
)
async def test_commands_outside_their_bounds_are_refused_with_the_reason(
    payload: bytes, reason: str
) -> None:
    answer = await result(payload, runner(allowed=("fix",)))
    assert answer.status == "rejected"
    assert answer.reason.startswith(reason), answer.reason


async def test_an_allowed_upgrade_with_release_args_runs() -> None:
    payload = command(action="upgrade", args={"to": "v1.23.1", "cloud_version": "v1.23.1"})
    answer = await result(payload, runner(allowed=("upgrade",)))
    assert (answer.status, answer.reason) == ("done", "upgrade ran")


async def test_a_little_clock_skew_is_allowed() -> None:
    answer = await result(command(issued=timedelta(seconds=200)))
    assert answer.status == "done"


async def test_one_board_wide_action_at_a_time_the_rest_are_busy() -> None:
    gate = asyncio.Event()
    r = runner(allowed=("fix", "join", "reset"), gate=gate)
    first = asyncio.create_task(r.execute(command("c-0", "check")))
    await asyncio.sleep(0)  # let it take the lock
    others = [
        await r.execute(command(f"c-{n}", a))
        for n, a in enumerate(("check", "fix", "join", "reset"), 1)
    ]
    assert [o.status for o in others] == ["busy"] * 4
    assert others[0].reason.startswith(
        "busy: another check, fix, join, reset or upgrade is running"
    )
    ping = asyncio.create_task(r.execute(command("p-1", "ping")))
    gate.set()
    assert (await ping).status == "done"  # ping is never held up
    assert (await first).status == "done"
    assert (await r.execute(command("c-9", "check"))).status == "done"


def unsealed(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(command("forged-1", "ping"))
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (json.dumps(unsealed(mac=None) | {"mac": None}).encode(),
         "unsigned: commands must carry the cloud API's MAC for this board"),
        (json.dumps({k: v for k, v in unsealed().items() if k != "mac"}).encode(),
         "unsigned: commands must carry the cloud API's MAC for this board"),
        (json.dumps(unsealed(mac="0" * 64)).encode(),
         "bad MAC: not sealed by this board's cloud API, or altered on the way"),
        # sealed right, then altered: an action, an argument, a lifetime
        (json.dumps(unsealed(action="reset")).encode(),
         "bad MAC: not sealed by this board's cloud API, or altered on the way"),
        (json.dumps(unsealed(args={"only": ["clock"]})).encode(),
         "bad MAC: not sealed by this board's cloud API, or altered on the way"),
        (json.dumps(unsealed(expires_at=(NOW + timedelta(seconds=3000)).isoformat())).encode(),
         "bad MAC: not sealed by this board's cloud API, or altered on the way"),
        # sealed for another board (its key is not this one's either)
        (sealed(json.loads(command("other-1", "reset")), node="board-2").encode(),
         "bad MAC: not sealed by this board's cloud API, or altered on the way"),
        (sealed(json.loads(command("other-2", "reset")), key=command_auth.new_key()).encode(),
         "bad MAC: not sealed by this board's cloud API, or altered on the way"),
    ],
    ids=["mac-null", "no-mac", "wrong-mac", "altered-action", "altered-args", "altered-expiry",
         "other-board", "other-key"],
)  # fmt: skip
async def test_a_command_not_sealed_for_this_board_never_runs(payload: bytes, reason: str) -> None:
    ran: list[str] = []

    async def handler(cmd: RemoteCommand) -> dict[str, Any]:
        ran.append(cmd.id)
        return {}

    r = runner(allowed=("reset",))
    r.handlers = dict.fromkeys(r.handlers, handler)
    answer = await result(payload, r)
    assert (answer.status, answer.reason) == ("rejected", reason)
    assert ran == []
    # a forged command does not spend its id: the real one still runs
    assert (await result(command(json.loads(payload)["id"], "ping"), r)).status == "done"


async def test_a_replayed_sealed_command_runs_once() -> None:
    r = runner()
    first = await result(command("once-1", "ping"), r)
    again = await result(command("once-1", "ping"), r)
    assert first.status == "done"
    assert (again.status, again.reason) == (
        "rejected",
        "duplicate id: this command was already received",
    )


async def test_a_board_without_a_key_runs_nothing() -> None:
    r = runner()
    r.key = lambda: None
    answer = await result(command("c-9", "ping"), r)
    assert answer.status == "rejected"
    assert answer.reason.startswith("this board holds no command key, so it runs no remote command")

"""Remote commands from kedge/<node>/cmd: size-checked before parsing, validated, run at
most once, within a bounded lifetime, mutating ones only when allowed by the board's
settings, and one board-wide action at a time. Every command that is not run gets a
`rejected` (or `busy`) result saying why; nothing a sender puts in a command can take
the daemon down or make it echo more than a short id and action back."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from pydantic import ValidationError

from kedge import command_auth
from kedge.errors import first_problem
from kedge.wire import CommandResult, RemoteCommand
from kedge.wire.commands import ACTIONS as COMMAND_ACTIONS
from kedge.wire.commands import MUTATING_ACTIONS

log = structlog.get_logger(__name__)

ACTIONS = COMMAND_ACTIONS
MUTATING = MUTATING_ACTIONS
# These drive keadm, docker and the checks: one at a time per board, others are busy.
EXCLUSIVE = ("check", "fix", "join", "reset", "upgrade")
COMMAND_TIMEOUT_S = 900.0
MAX_COMMAND_BYTES = 16 * 1024
MAX_LIFETIME_S = 3600.0  # expires_at - issued_at
CLOCK_SKEW_S = 300.0  # how far in the future issued_at may be (the sender's clock)
# Ids are remembered for as long as a command can live, plus the skew allowance.
REMEMBER_S = MAX_LIFETIME_S + 2 * CLOCK_SKEW_S
ARGS = {"check": {"only"}, "fix": {"only", "dry_run"}, "ping": set(), "join": set(), "reset": set(),
        "upgrade": {"to", "cloud_version"}}  # fmt: skip
_ECHO_RE = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
RELEASE_RE = re.compile(r"v1\.\d{1,3}\.\d{1,3}")

Handler = Callable[[RemoteCommand], Awaitable[dict[str, Any]]]


def _now() -> datetime:
    return datetime.now(UTC)


def _in_memory_sequence() -> Callable[[str, int], bool]:
    last: dict[str, int] = {}

    def advance(key_id: str, seq: int) -> bool:
        if seq <= last.get(key_id, 0):
            return False
        last[key_id] = seq
        return True

    return advance


def rejected(
    reason: str, command_id: str | None = None, action: str | None = None, status: str = "rejected"
) -> CommandResult:
    fields = {"id": command_id, "action": action, "status": status, "reason": reason}
    return CommandResult.model_validate({**fields, "finished_at": _now()})


def _echo(raw: Any, key: str) -> str | None:
    """A field of a rejected command, repeated only when it is short and plain."""
    value = raw.get(key) if isinstance(raw, dict) else None
    return value if isinstance(value, str) and _ECHO_RE.fullmatch(value) else None


class CommandRunner:
    def __init__(
        self,
        handlers: Mapping[str, Handler],
        allowed: list[str],
        remember: Callable[[str], bool],
        known_checks: Collection[str] = (),
        clock: Callable[[], datetime] = _now,
        *,
        node: Callable[[], str],
        key: Callable[[], str | None],
        sequence: Callable[[str, int], bool] | None = None,
    ) -> None:
        self.node, self.key = node, key
        # (key id, seq) -> True once when seq is above the last accepted under that key.
        self.sequence = sequence or _in_memory_sequence()
        self.handlers = handlers
        self.allowed = set(allowed)
        self.remember = remember
        self.known_checks = set(known_checks)
        self.clock = clock
        self._exclusive = asyncio.Lock()

    def parse(self, payload: bytes) -> RemoteCommand | CommandResult:
        if len(payload) > MAX_COMMAND_BYTES:
            return rejected(f"command too large: {len(payload)} bytes (limit {MAX_COMMAND_BYTES})")
        try:
            raw = json.loads(payload)
        except RecursionError:
            return rejected("malformed command: JSON nested too deeply")
        except ValueError:
            return rejected("malformed command: not JSON")
        cid, action = _echo(raw, "id"), _echo(raw, "action")
        try:
            # Strict, unlike readers of reports: an unknown key may be a qualifier an
            # older board would wrongly ignore, so it refuses instead of guessing.
            command = RemoteCommand.model_validate(raw, extra="forbid")
        except ValidationError as exc:
            return rejected(f"malformed command: {first_problem(exc, 'command')}", cid, action)
        except RecursionError:
            return rejected("malformed command: command: nested too deeply", cid, action)
        # Before anything else the command says is considered: a forger learns nothing
        # (not even whether an action is allowed) and cannot spend an id.
        key = self.key()  # once: a reload in between must not change which key checks it
        if (reason := command_auth.refusal(command, self.node(), key)) is not None:
            return rejected(reason, command.id, command.action)
        if command.action not in ACTIONS:
            return rejected(
                f"unknown action {command.action!r} (known: {', '.join(ACTIONS)})", command.id
            )
        if (reason := self._refusal(command)) is not None:
            return rejected(reason, command.id, command.action)
        if not self.remember(command.id):
            return rejected(
                "duplicate id: this command was already received", command.id, command.action
            )
        # refusal() has made sure of both.
        if (
            key is None
            or command.seq is None
            or not self.sequence(command_auth.key_id(key), command.seq)
        ):
            return rejected(
                f"replayed: sequence {command.seq} is not above the last this board accepted "
                "(a command captured earlier, sent again)",
                command.id,
                command.action,
            )
        return command

    def _refusal(self, command: RemoteCommand) -> str | None:
        """Why a well-formed command must not run, or None."""
        now = self.clock()
        if command.issued_at > now + timedelta(seconds=CLOCK_SKEW_S):
            return (
                f"issued_at {command.issued_at.isoformat()} is in the future (this board's clock says "
                f"{now.isoformat()}; allowance {CLOCK_SKEW_S:g} s): check both clocks"
            )
        if (command.expires_at - command.issued_at).total_seconds() > MAX_LIFETIME_S:
            return f"expires_at is more than {MAX_LIFETIME_S:g} s after issued_at"
        if command.expires_at <= now:
            return f"expired at {command.expires_at.isoformat()}"
        unknown_args = set(command.args) - ARGS[command.action]
        if unknown_args:
            return f"unknown args for {command.action}: {', '.join(sorted(unknown_args))}"
        only = command.args.get("only", [])
        if not isinstance(only, list) or not all(isinstance(i, str) for i in only):
            return 'args.only must be a list of check ids, for example ["clock", "docker"]'
        if self.known_checks and (bad := [i for i in only if i not in self.known_checks]):
            return f"args.only: unknown check id {bad[0][:64]!r} (known: {', '.join(sorted(self.known_checks))})"
        if not isinstance(command.args.get("dry_run", False), bool):
            return "args.dry_run must be true or false"
        for key in ("to", "cloud_version"):
            value = command.args.get(key)
            if value is not None and not (isinstance(value, str) and RELEASE_RE.fullmatch(value)):
                return f"args.{key} must be a KubeEdge release like v1.23.1"
        if command.action in MUTATING and command.action not in self.allowed:
            return f"{command.action} is not allowed remotely on this board (allow_remote in /etc/kedge/agent.toml)"
        return None

    async def execute(self, payload: bytes) -> CommandResult:
        try:
            parsed = self.parse(payload)
        except Exception as exc:  # whatever a sender sends, they get an answer
            log.exception("command.parse_crashed")
            parsed = rejected(f"malformed command ({type(exc).__name__})")
        if isinstance(parsed, CommandResult):
            log.warning("command.rejected", id=parsed.id, reason=parsed.reason[:200])
            return parsed
        command = parsed
        if command.action in EXCLUSIVE and self._exclusive.locked():
            return rejected(
                "busy: another check, fix, join, reset or upgrade is running; send it again later",
                command.id, command.action, status="busy",
            )  # fmt: skip
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                if command.action in EXCLUSIVE:
                    async with self._exclusive:
                        result = await self.handlers[command.action](command)
                else:
                    result = await self.handlers[command.action](command)
        except Exception as exc:  # noqa: BLE001 - a failing command is a result, not a crash
            log.warning("command.failed", id=command.id, action=command.action, error=str(exc))
            return CommandResult(id=command.id, action=command.action, status="failed",
                                 reason=f"{type(exc).__name__}: {exc}", finished_at=_now())  # fmt: skip
        ok = result.pop("ok", True)
        return CommandResult(id=command.id, action=command.action, status="done" if ok else "failed",
                             reason=str(result.pop("summary", "")), result=result, finished_at=_now())  # fmt: skip

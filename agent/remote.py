"""Remote commands from kedge/<node>/cmd: validated, run at most once, mutating ones
only when allowed by the board's settings and one at a time. A bad command gets a
rejected result that says why; it never takes the daemon down."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import structlog
from pydantic import ValidationError

from agent.report import CommandResult, RemoteCommand

log = structlog.get_logger(__name__)

ACTIONS = ("ping", "check", "fix", "join", "reset")
MUTATING = ("fix", "join", "reset")
COMMAND_TIMEOUT_S = 900.0

Handler = Callable[[RemoteCommand], Awaitable[dict[str, Any]]]


def _now() -> datetime:
    return datetime.now(UTC)


def rejected(
    reason: str, command_id: str | None = None, action: str | None = None
) -> CommandResult:
    return CommandResult(
        id=command_id, action=action, status="rejected", reason=reason, finished_at=_now()
    )


class CommandRunner:
    def __init__(
        self,
        handlers: dict[str, Handler],
        allowed: list[str],
        remember: Callable[[str], bool],
    ) -> None:
        self.handlers = handlers
        self.allowed = set(allowed)
        self.remember = remember
        self._mutating = asyncio.Lock()

    def parse(self, payload: bytes) -> RemoteCommand | CommandResult:
        try:
            raw = json.loads(payload)
        except (ValueError, UnicodeDecodeError):
            return rejected("malformed command: not JSON")
        cid = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
        action = (
            raw.get("action")
            if isinstance(raw, dict) and isinstance(raw.get("action"), str)
            else None
        )
        try:
            command = RemoteCommand.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in first["loc"]) or "command"
            return rejected(
                f"malformed command: {where}: {first['msg']}",
                cid if cid and len(cid) <= 64 else None,
                action,
            )
        if command.action not in ACTIONS:
            return rejected(
                f"unknown action {command.action!r} (known: {', '.join(ACTIONS)})",
                command.id,
                command.action,
            )
        if command.expires_at <= _now():
            return rejected(
                f"expired at {command.expires_at.isoformat()}", command.id, command.action
            )
        if command.action in MUTATING and command.action not in self.allowed:
            return rejected(
                f"{command.action} is not allowed remotely on this board (allow_remote in /etc/kedge/agent.toml)",
                command.id, command.action,
            )  # fmt: skip
        if not self.remember(command.id):
            return rejected(
                "duplicate id: this command was already received", command.id, command.action
            )
        return command

    async def execute(self, payload: bytes) -> CommandResult:
        parsed = self.parse(payload)
        if isinstance(parsed, CommandResult):
            log.warning("command.rejected", id=parsed.id, reason=parsed.reason)
            return parsed
        command = parsed
        if command.action in MUTATING and self._mutating.locked():
            return rejected("another mutating command is running", command.id, command.action)
        try:
            async with asyncio.timeout(COMMAND_TIMEOUT_S):
                if command.action in MUTATING:
                    async with self._mutating:
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

"""A job that fails every interval logs its error once per distinct message."""

from __future__ import annotations

import sqlite3

import structlog

from kedge.errors import KedgeError

log = structlog.get_logger("agent.daemon")


class Troubles:
    def __init__(self) -> None:
        self._last: dict[str, str] = {}

    def note(self, what: str, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if self._last.get(what) == message:
            return
        self._last[what] = message
        # A storage or host error is a fact about the board; anything else is a bug.
        trace = None if isinstance(exc, OSError | KedgeError | sqlite3.Error) else exc
        log.error(f"{what}.failed", error=message, exc_info=trace)

    def cleared(self, what: str) -> None:
        self._last.pop(what, None)

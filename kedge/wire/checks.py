"""A preflight report: `kedge-agent check --json` and kedge/<node>/checks."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import Field

from kedge.wire._base import Payload, Versioned


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 - a status, not a password
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"
    ERROR = "error"

    @property
    def blocks(self) -> bool:
        """Whether this status means the board is not ready to join."""
        return self in (Status.FAIL, Status.ERROR)


class CheckResult(Payload):
    id: str
    title: str
    status: Status
    summary: str
    remedy: str = ""
    details: dict[str, Any] = Field(
        default_factory=dict, description="for people and dashboards; code reads typed facts"
    )
    duration_ms: int = 0


class CheckReport(Versioned):
    json_indent = 2

    node: str
    kubeedge_version: str
    started_at: datetime
    duration_ms: int
    ok: bool
    checks: list[CheckResult]

    def counts(self) -> dict[Status, int]:
        tally = dict.fromkeys(Status, 0)
        for c in self.checks:
            tally[c.status] += 1
        return tally


class ChecksSummary(Payload):
    """A preflight in one line: in health reports and the daemon's status file."""

    ok: bool
    failing: list[str]
    at: datetime

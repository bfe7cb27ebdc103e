"""The result of fix, join, reset, enroll and upgrade (`--json`, and a remote command's result)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from kedge.wire._base import Payload, Versioned
from kedge.wire.checks import CheckResult


class Change(Payload):
    """One thing a mutating command did (or, with --dry-run, would do)."""

    action: str = Field(description='"write", "remove", "run", "pull", "stop", ...')
    target: str
    detail: str = ""
    done: bool = True


class Cause(Payload):
    """A failure kedge recognised in keadm's or edgecore's output."""

    id: str
    summary: str
    remedy: str
    evidence: str


class ActionReport(Versioned):
    json_indent = 2

    command: Literal["fix", "join", "reset", "enroll", "upgrade"]
    node: str
    ok: bool
    summary: str
    changes: list[Change] = Field(default_factory=list)
    causes: list[Cause] = Field(default_factory=list)
    checks: list[CheckResult] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)

"""The versioned payloads that leave the board: CLI JSON, MQTT and the cloud API share them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION: Literal[1] = 1


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


class CheckResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    status: Status
    summary: str
    remedy: str = ""
    details: dict[str, Any] = Field(default_factory=dict)
    duration_ms: int = 0


class CheckReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    schema_: Literal[1] = Field(SCHEMA_VERSION, alias="schema")
    node: str
    kubeedge_version: str
    started_at: datetime
    duration_ms: int
    ok: bool
    checks: list[CheckResult]

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)

    def counts(self) -> dict[Status, int]:
        tally = dict.fromkeys(Status, 0)
        for c in self.checks:
            tally[c.status] += 1
        return tally


class Change(BaseModel):
    """One thing a mutating command did (or, with --dry-run, would do)."""

    model_config = ConfigDict(extra="forbid")

    action: str  # "write", "remove", "run", "pull", "stop", ...
    target: str
    detail: str = ""
    done: bool = True


class Cause(BaseModel):
    """A failure kedge recognised in keadm's or edgecore's output."""

    model_config = ConfigDict(extra="forbid")

    id: str
    summary: str
    remedy: str
    evidence: str


class ActionReport(BaseModel):
    """The result of fix, join or reset: what changed, and whether it worked."""

    model_config = ConfigDict(extra="forbid")

    schema_: Literal[1] = Field(SCHEMA_VERSION, alias="schema")
    command: Literal["fix", "join", "reset"]
    node: str
    ok: bool
    summary: str
    changes: list[Change] = Field(default_factory=list)
    causes: list[Cause] = Field(default_factory=list)
    checks: list[CheckResult] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)

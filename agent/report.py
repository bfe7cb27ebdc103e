"""The versioned payloads that leave the board: CLI JSON, MQTT and the cloud API share them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

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
    command: Literal["fix", "join", "reset", "enroll"]
    node: str
    ok: bool
    summary: str
    changes: list[Change] = Field(default_factory=list)
    causes: list[Cause] = Field(default_factory=list)
    checks: list[CheckResult] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)


class Usage(BaseModel):
    total_mb: int
    free_mb: int
    percent: float


class DockerState(BaseModel):
    up: bool
    version: str | None = None
    containers_running: int | None = None
    error: str | None = None


class EdgecoreState(BaseModel):
    active: bool | None  # None: cannot tell (no systemctl)
    state: str
    restarts: int | None = None


class ChecksSummary(BaseModel):
    ok: bool
    failing: list[str]
    at: datetime


class HealthReport(BaseModel):
    """What the board says about itself every report_interval (kedge/<node>/health)."""

    model_config = ConfigDict(extra="forbid")

    schema_: Literal[1] = Field(SCHEMA_VERSION, alias="schema")
    node: str
    seq: int
    timestamp: datetime
    replayed: bool = False  # produced while the broker was unreachable
    agent_version: str
    uptime_s: float
    agent_uptime_s: float
    cpu_percent: float
    load: tuple[float, float, float]
    memory: Usage
    swap: Usage
    disks: dict[str, Usage]
    temperature_c: float | None
    temperatures_c: dict[str, float]
    network: dict[str, int]
    docker: DockerState
    edgecore: EdgecoreState
    join_phase: str | None
    checks: ChecksSummary | None
    clock_offset_s: float | None
    spool_depth: int
    spool_dropped: int
    spool_error: str | None = None  # the disk queue failed: reports are held in memory only

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


class RemoteCommand(BaseModel):
    """A command sent to kedge/<node>/cmd."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    action: str = Field(max_length=64)
    # With a zone: a naive time means a different instant on each board.
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    args: dict[str, Any] = Field(default_factory=dict)


class CommandResult(BaseModel):
    """The answer on kedge/<node>/cmd/result."""

    model_config = ConfigDict(extra="forbid")

    schema_: Literal[1] = Field(SCHEMA_VERSION, alias="schema")
    id: str | None
    action: str | None
    status: Literal["done", "failed", "rejected", "busy"]
    reason: str = ""
    result: dict[str, Any] = Field(default_factory=dict)
    finished_at: datetime

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)

"""What a board says about itself every report_interval (kedge/<node>/health)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from kedge.wire._base import Payload, Versioned
from kedge.wire.checks import ChecksSummary


class Usage(Payload):
    total_mb: int
    free_mb: int
    percent: float


class DockerState(Payload):
    up: bool
    version: str | None = None
    containers_running: int | None = None
    error: str | None = None


class EdgecoreState(Payload):
    active: bool | None  # None: cannot tell (no systemctl)
    state: str
    restarts: int | None = None


class HealthReport(Versioned):
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
    # The remote actions this board accepts beyond ping and check (its allow_remote).
    allow_remote: list[str] = Field(default_factory=list)

"""The board daemon's own status file (<state_dir>/daemon.json), which
`kedge-agent status` reads: written by one process, read by another."""

from __future__ import annotations

from datetime import datetime

from kedge.wire._base import Payload
from kedge.wire.checks import ChecksSummary


class DaemonStatus(Payload):
    pid: int
    node: str
    broker: str  # host:port
    connected: bool
    connected_since: float | None = None
    last_error: str | None = None
    refused: str | None = None  # the broker refused the credentials or the client: why
    spool_depth: int = 0
    spool_dropped: int = 0
    spool_error: str | None = None
    checks: ChecksSummary | None = None
    last_report: datetime | None = None

"""The wire contract: every payload that crosses a process boundary, versioned, with a
JSON Schema each under docs/schemas/ (tests/test_wire_contract.py keeps them fresh).

It imports nothing from either program (an import-linter contract), so the board, the
cloud API and any third consumer read the same shapes.
"""

from __future__ import annotations

from pydantic import BaseModel

from kedge.wire._base import SCHEMA_VERSION, Payload, Versioned, WireSecret
from kedge.wire.actions import ActionReport, Cause, Change
from kedge.wire.checks import CheckReport, CheckResult, ChecksSummary, Status
from kedge.wire.commands import CommandResult, RemoteCommand
from kedge.wire.discovery import Device, DiscoveryConfig, Origin
from kedge.wire.enrollment import (
    BrokerAnswer,
    Enrolled,
    EnrollPending,
    EnrollRequest,
    RenewRequest,
)
from kedge.wire.firstboot import FirstBootProgress, PhaseTime
from kedge.wire.health import DockerState, EdgecoreState, HealthReport, Usage
from kedge.wire.status import DaemonStatus
from kedge.wire.topics import AVAILABLE, NOT_AVAILABLE, Topics

# One JSON Schema per payload: docs/schemas/<name>.schema.json.
SCHEMAS: dict[str, type[BaseModel]] = {
    "health": HealthReport,
    "checks": CheckReport,
    "action": ActionReport,
    "command": RemoteCommand,
    "command-result": CommandResult,
    "discovery": DiscoveryConfig,
    "enroll-request": EnrollRequest,
    "enroll-answer": Enrolled,
    "enroll-pending": EnrollPending,
    "renew-request": RenewRequest,
    "daemon-status": DaemonStatus,
    "firstboot": FirstBootProgress,
}

__all__ = [
    "AVAILABLE",
    "NOT_AVAILABLE",
    "SCHEMAS",
    "SCHEMA_VERSION",
    "ActionReport",
    "BrokerAnswer",
    "Cause",
    "Change",
    "CheckReport",
    "CheckResult",
    "ChecksSummary",
    "CommandResult",
    "DaemonStatus",
    "Device",
    "DiscoveryConfig",
    "DockerState",
    "EdgecoreState",
    "EnrollPending",
    "EnrollRequest",
    "Enrolled",
    "FirstBootProgress",
    "HealthReport",
    "Origin",
    "Payload",
    "PhaseTime",
    "RemoteCommand",
    "RenewRequest",
    "Status",
    "Topics",
    "Usage",
    "Versioned",
    "WireSecret",
]

"""Commands to a board (kedge/<node>/cmd) and their results (kedge/<node>/cmd/result).
The limits a board enforces beyond this shape are in agent.remote and docs/mqtt.md."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, Field

from kedge.wire._base import Payload, Versioned

ACTIONS = ("ping", "check", "fix", "join", "reset", "upgrade")
MUTATING_ACTIONS = ("fix", "join", "reset", "upgrade")  # only where the board allows them
COMMAND_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"


class RemoteCommand(Payload):
    id: str = Field(pattern=COMMAND_ID_PATTERN)
    action: str = Field(max_length=64, description="one of " + ", ".join(ACTIONS))
    # With a zone: a naive time means a different instant on each board.
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    args: dict[str, Any] = Field(default_factory=dict)
    seq: int | None = Field(
        None,
        ge=1,
        le=2**53,
        description="the cloud API's sequence for this board, sealed with the command: the "
        "board accepts only a sequence above the last it accepted (replay that does not "
        "rest on its clock)",
    )
    mac: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="HMAC-SHA256 by the cloud API under the board's key (kedge.command_auth)",
    )


class CommandResult(Versioned):
    id: str | None
    action: str | None
    status: Literal["done", "failed", "rejected", "busy"]
    reason: str = ""
    result: dict[str, Any] = Field(default_factory=dict)
    finished_at: datetime

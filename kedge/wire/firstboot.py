"""A board's first boot from a seed, phase by phase (kedge/<node>/firstboot, retained):
what `kedge-agent status` shows locally and the fleet view shows from afar."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from kedge.wire._base import Payload, Versioned

# In order; a power loss resumes at the phase it was in.
PHASES = ("seed", "network", "clock", "enrolling", "checking", "fixing", "joining", "starting",
          "joined")  # fmt: skip
Phase = Literal[
    "seed", "network", "clock", "enrolling", "checking", "fixing", "joining", "starting", "joined"
]
# running: working on the phase; waiting: for something outside the board (the network,
# the clock, an admin's approval), retrying with backoff; blocked: for something only a
# person can change (k3s on the board, a used-up secret), saying what; done: joined.
State = Literal["running", "waiting", "blocked", "done"]


class PhaseTime(Payload):
    phase: Phase
    started_at: datetime
    finished_at: datetime | None = None
    outcome: str = ""


class FirstBootProgress(Versioned):
    node: str
    phase: Phase
    state: State
    since: datetime = Field(description="when the board entered this phase and state")
    summary: str
    remedy: str = ""
    check: str | None = Field(None, description="the failing check, when one stops it")
    attempt: int = Field(1, ge=1, description="attempts at this phase")
    started_at: datetime = Field(description="when the first boot began")
    timeline: list[PhaseTime] = Field(default_factory=list, max_length=64)

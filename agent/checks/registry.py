"""What a check is, and the table of all of them.

A check is a small async function taking the run's context and returning an Outcome.
It declares a stable id, a title, the checks it depends on and, if it needs more than
the default, its own timeout.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kedge.wire import Status

if TYPE_CHECKING:
    from agent.checks.context import CheckContext


@dataclass(frozen=True)
class Outcome:
    status: Status
    summary: str
    remedy: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def passed(summary: str, **details: Any) -> Outcome:
    return Outcome(Status.PASS, summary, "", details)


def warned(summary: str, remedy: str, **details: Any) -> Outcome:
    return Outcome(Status.WARN, summary, remedy, details)


def failed(summary: str, remedy: str, **details: Any) -> Outcome:
    return Outcome(Status.FAIL, summary, remedy, details)


def skipped(summary: str, **details: Any) -> Outcome:
    return Outcome(Status.SKIP, summary, "", details)


NOT_USED = "not_used"  # a detail: the check does not apply to this board's setup


def not_used(summary: str) -> Outcome:
    """Skipped because the board does not use what the check looks at (docker's checks on
    a containerd board, the CRI's on a docker one): nothing to repair, nothing blocked."""
    return Outcome(Status.SKIP, summary, "", {NOT_USED: True})


CheckFunc = Callable[["CheckContext"], Awaitable[Outcome]]


@dataclass(frozen=True)
class Check:
    id: str
    title: str
    description: str
    func: CheckFunc
    needs: tuple[str, ...] = ()
    timeout: float | None = None


REGISTRY: dict[str, Check] = {}


def check(
    id: str,  # the check's public id
    title: str,
    description: str,
    *,
    needs: tuple[str, ...] = (),
    timeout: float | None = None,
) -> Callable[[CheckFunc], CheckFunc]:
    """Register a check function under a stable id."""

    def register(func: CheckFunc) -> CheckFunc:
        if id in REGISTRY:
            raise RuntimeError(f"check id {id!r} registered twice")
        REGISTRY[id] = Check(id, title, description, func, needs, timeout)
        return func

    return register

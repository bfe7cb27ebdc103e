"""Runs checks concurrently, each under its own deadline, honouring dependencies.

A check that raises or overruns becomes `error` and the others go on; a check whose
dependency did not pass (or warn) is `skip`ped with the reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence

import structlog

from agent.checks.context import CheckContext
from agent.checks.registry import NOT_USED, REGISTRY, Check, Outcome
from kedge.errors import KedgeError
from kedge.wire import CheckResult, Status

log = structlog.get_logger(__name__)


def select(
    only: Iterable[str] = (), skip: Iterable[str] = (), registry: dict[str, Check] | None = None
) -> list[Check]:
    """The checks to run, in registry order. `only` pulls in what its checks need."""
    table = REGISTRY if registry is None else registry
    unknown = sorted((set(only) | set(skip)) - set(table))
    if unknown:
        raise KeyError(", ".join(unknown))
    chosen = set(only) if only else set(table)
    pending = list(chosen)
    while pending:
        for dep in table[pending.pop()].needs:
            if dep not in chosen:
                chosen.add(dep)
                pending.append(dep)
    chosen -= set(skip)
    return [c for c in table.values() if c.id in chosen]


async def run_checks(
    ctx: CheckContext,
    checks: Sequence[Check],
    *,
    ignore: Iterable[str] = (),
    default_timeout: float = 10.0,
) -> list[CheckResult]:
    """Run `checks` and return one result each, in the order given."""
    ignored = set(ignore)
    present = {c.id for c in checks}
    tasks: dict[str, asyncio.Task[CheckResult]] = {}

    async def run_one(c: Check) -> CheckResult:
        start = time.monotonic()
        outcome = await _dependencies_allow(c, present, tasks)
        if outcome is None:
            outcome = await _guarded(c, ctx, c.timeout or default_timeout)
        result = CheckResult(
            id=c.id,
            title=c.title,
            status=outcome.status,
            summary=outcome.summary,
            remedy=outcome.remedy,
            details=dict(outcome.details),
            duration_ms=round((time.monotonic() - start) * 1000),
        )
        if result.status is Status.FAIL and c.id in ignored:
            result.status = Status.WARN
            result.summary += " (failure ignored by --ignore)"
            result.details["ignored_failure"] = True
        log.debug("check.done", check=c.id, status=result.status.value, ms=result.duration_ms)
        return result

    for c in checks:
        tasks[c.id] = asyncio.create_task(run_one(c), name=f"check:{c.id}")
    return list(await asyncio.gather(*tasks.values()))


async def _dependencies_allow(
    c: Check, present: set[str], tasks: dict[str, asyncio.Task[CheckResult]]
) -> Outcome | None:
    for dep in c.needs:
        if dep not in present:
            return Outcome(Status.SKIP, f"needs the {dep} check, which was not run")
        dep_result = await asyncio.shield(tasks[dep])
        if dep_result.details.get(NOT_USED):
            return Outcome(Status.SKIP, dep_result.summary, "", {NOT_USED: True})
        if dep_result.status not in (Status.PASS, Status.WARN):
            return Outcome(
                Status.SKIP, f"needs the {dep} check, which did not pass ({dep_result.status})"
            )
    return None


async def _guarded(c: Check, ctx: CheckContext, timeout: float) -> Outcome:
    try:
        async with asyncio.timeout(timeout):
            return await c.func(ctx)
    except TimeoutError:
        return Outcome(Status.ERROR, f"no result within {timeout:g} s", _error_remedy(c))
    except KedgeError as exc:
        return Outcome(Status.ERROR, str(exc), _error_remedy(c), {"error": type(exc).__name__})
    except Exception as exc:  # one broken check must not sink the run
        log.exception("check.crashed", check=c.id)
        return Outcome(
            Status.ERROR,
            f"internal error: {type(exc).__name__}: {exc}",
            "This is a bug in kedge-agent; please report it with the output of --json.",
            {"error": type(exc).__name__},
        )


def _error_remedy(c: Check) -> str:
    return (
        f"Re-run `kedge-agent check --only {c.id}` with -v to see what the check was waiting for."
    )

"""`kedge-agent fix`: run the checks, repair what has a repair, check again."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from agent.checks import ORDER
from agent.docker_api import DockerClient
from agent.fixes import FIXES, CannotFix, FixContext
from agent.host import Host
from agent.preflight import run_preflight
from agent.report import Change, CheckResult, Status
from agent.settings import AgentSettings

FIXABLE = tuple(c for c in ORDER if c in FIXES)


@dataclass
class FixOutcome:
    ok: bool
    summary: str
    node: str
    changes: list[Change] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)
    checks: list[CheckResult] = field(default_factory=list)


async def run_fix(
    settings: AgentSettings,
    host: Host,
    *,
    only: Iterable[str] = (),
    dry_run: bool,
    emit: Callable[[str], None],
    from_archive: Path | None = None,
    force_remove_conflicts: bool = False,
) -> FixOutcome:
    targets = [c for c in FIXABLE if not list(only) or c in only]
    before = await run_preflight(settings, host, only=targets)
    mine = [c for c in before.checks if c.id in targets]
    todo = [c for c in mine if c.status in (Status.FAIL, Status.WARN)]
    # A skipped or errored check cannot be repaired blind: say why instead.
    problems = [
        {"check": c.id, "problem": f"cannot tell what to fix: {c.summary}",
         "remedy": c.remedy or "Fix what the check depends on first (see kedge-agent check)."}
        for c in mine if c.status in (Status.SKIP, Status.ERROR)
    ]  # fmt: skip
    if not todo:
        if problems:
            first = problems[0]
            return FixOutcome(False, f"nothing fixed: {first['check']}: {first['problem']}", before.node,
                              problems=problems, checks=before.checks)  # fmt: skip
        return FixOutcome(
            True,
            f"nothing to fix: {', '.join(targets)} already pass",
            before.node,
            checks=before.checks,
        )
    async with DockerClient(settings.docker_socket) as docker:
        fx = FixContext(settings, host, docker, dry_run, emit, from_archive, force_remove_conflicts)
        for result in todo:
            emit(f"{result.id}: {result.summary}")
            try:
                await FIXES[result.id](fx, result)
            except CannotFix as exc:
                problems.append({"check": result.id, "problem": str(exc), "remedy": exc.remedy})
                emit(f"{result.id}: not fixed: {exc}")
    if dry_run:
        verb = f"would make {len(fx.changes)} changes" if fx.changes else "would change nothing"
        return FixOutcome(
            not problems, f"dry run: {verb}", before.node, fx.changes, problems, before.checks
        )
    after = await run_preflight(settings, host, only=[c.id for c in todo])
    still = [c for c in after.checks if c.id in {t.id for t in todo} and c.status.blocks]
    ok = not still and not problems
    done = f"{len(fx.changes)} changes" if fx.changes else "no changes"
    if ok:
        summary = f"fixed {', '.join(t.id for t in todo)} ({done})"
    else:
        failing = sorted({c.id for c in still} | {p["check"] for p in problems})
        summary = f"{done}; still failing: {', '.join(failing)}"
    return FixOutcome(ok, summary, before.node, fx.changes, problems, after.checks)

"""`kedge-agent fix`: run the checks, repair what has a repair, check again."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from agent.checks import ORDER
from agent.checks.registry import NOT_USED
from agent.docker_api import DockerClient
from agent.fixes import FIXES, CannotFix, FixContext
from agent.preflight import run_preflight
from agent.settings import AgentSettings
from kedge.host import Host
from kedge.wire import ActionReport, Status

FIXABLE = tuple(c for c in ORDER if c in FIXES)


def _report(
    ok: bool, summary: str, node: str, problems: list[dict[str, str]], **fields: Any
) -> ActionReport:
    return ActionReport(
        command="fix", ok=ok, summary=summary, node=node, details={"problems": problems}, **fields
    )


async def run_fix(
    settings: AgentSettings,
    host: Host,
    *,
    only: Iterable[str] = (),
    dry_run: bool,
    emit: Callable[[str], None],
    from_archive: Path | None = None,
    force_remove_conflicts: bool = False,
    cni_archive: Path | None = None,
) -> ActionReport:
    targets = [c for c in FIXABLE if not list(only) or c in only]
    found = await run_preflight(settings, host, only=targets)
    before = found.report
    mine = [c for c in before.checks if c.id in targets]
    todo = [c for c in mine if c.status in (Status.FAIL, Status.WARN)]
    # A skipped or errored check cannot be repaired blind: say why instead.
    problems = [
        {"check": c.id, "problem": f"cannot tell what to fix: {c.summary}",
         "remedy": c.remedy or "Fix what the check depends on first (see kedge-agent check)."}
        for c in mine if c.status in (Status.SKIP, Status.ERROR) and not c.details.get(NOT_USED)
    ]  # fmt: skip
    if not todo:
        if problems:
            first = problems[0]
            summary = f"nothing fixed: {first['check']}: {first['problem']}"
            return _report(False, summary, before.node, problems, checks=before.checks)
        summary = f"nothing to fix: {', '.join(targets)} already pass"
        return _report(True, summary, before.node, problems, checks=before.checks)
    async with DockerClient(settings.docker_socket) as docker:
        fx = FixContext(settings, host, docker, dry_run, emit, found.facts, from_archive,
                        force_remove_conflicts, cni_archive)  # fmt: skip
        for result in todo:
            emit(f"{result.id}: {result.summary}")
            try:
                await FIXES[result.id](fx, result)
            except CannotFix as exc:
                problems.append({"check": result.id, "problem": str(exc), "remedy": exc.remedy})
                emit(f"{result.id}: not fixed: {exc}")
    if dry_run:
        verb = f"would make {len(fx.changes)} changes" if fx.changes else "would change nothing"
        return _report(
            not problems,
            f"dry run: {verb}",
            before.node,
            problems,
            changes=fx.changes,
            checks=before.checks,
        )
    after = (await run_preflight(settings, host, only=[c.id for c in todo])).report
    still = {c.id for c in after.checks if c.id in {t.id for t in todo} and c.status.blocks}
    made = [c for c in fx.changes if c.done]
    done = f"{len(made)} changes" if made else "no changes"
    if not still and not problems:
        summary = f"fixed {', '.join(t.id for t in todo)} ({done})"
    else:
        summary = (
            f"{done}; still failing: {', '.join(sorted(still | {p['check'] for p in problems}))}"
        )
    ok = not still and not problems
    return _report(ok, summary, before.node, problems, changes=fx.changes, checks=after.checks)

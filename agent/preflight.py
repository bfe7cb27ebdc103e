"""One preflight run: settings + host → the report (for people and the wire) and the
typed facts the checks found (for join, fix and the daemon)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from agent.checks import CHECKS
from agent.checks.context import CheckContext
from agent.checks.engine import run_checks, select
from agent.checks.facts import Facts
from agent.docker_api import DockerClient
from agent.settings import AgentSettings
from kedge.host import Host
from kedge.wire import CheckReport


@dataclass(frozen=True)
class Preflight:
    report: CheckReport
    facts: Facts


async def run_preflight(
    settings: AgentSettings,
    host: Host,
    *,
    only: Iterable[str] = (),
    skip: Iterable[str] = (),
    ignore: Iterable[str] = (),
) -> Preflight:
    chosen = select(only, skip, CHECKS)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    async with DockerClient(settings.docker_socket, timeout=5.0) as docker:
        ctx = CheckContext(settings, host, docker)
        try:
            results = await run_checks(
                ctx, chosen, ignore=ignore, default_timeout=settings.check_timeout_s
            )
        finally:
            await ctx.aclose()
    report = CheckReport(
        node=ctx.node_name(),
        kubeedge_version=settings.kubeedge_version,
        started_at=started,
        duration_ms=round((time.monotonic() - t0) * 1000),
        ok=not any(r.status.blocks for r in results),
        checks=results,
    )
    return Preflight(report, ctx.facts)

"""One preflight run: settings + host → CheckReport. Used by `check` (and later `join`)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime

from agent.checks import CHECKS
from agent.checks.context import CheckContext
from agent.checks.engine import run_checks, select
from agent.docker_api import DockerClient
from agent.host import Host
from agent.report import CheckReport
from agent.settings import AgentSettings


async def run_preflight(
    settings: AgentSettings,
    host: Host,
    *,
    only: Iterable[str] = (),
    skip: Iterable[str] = (),
    ignore: Iterable[str] = (),
) -> CheckReport:
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
    return CheckReport(
        node=ctx.node_name(),
        kubeedge_version=settings.kubeedge_version,
        started_at=started,
        duration_ms=round((time.monotonic() - t0) * 1000),
        ok=not any(r.status.blocks for r in results),
        checks=results,
    )

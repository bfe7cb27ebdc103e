"""The check engine: concurrency, deadlines, crashes, dependencies, selection, --ignore."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from agent.checks.context import CheckContext
from agent.checks.engine import run_checks, select
from agent.checks.registry import Check, CheckFunc, Outcome, failed, passed
from agent.docker_api import DockerClient
from agent.settings import load_settings
from kedge.errors import ProbeError
from kedge.host import Host
from kedge.wire import Status


def make(
    cid: str, func: CheckFunc, needs: tuple[str, ...] = (), timeout: float | None = None
) -> Check:
    return Check(cid, cid.title(), f"test check {cid}", func, needs, timeout)


async def ok(ctx: CheckContext) -> Outcome:
    return passed("fine")


async def bad(ctx: CheckContext) -> Outcome:
    return failed("broken", "mend it")


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[CheckContext]:
    cfg = tmp_path / "agent.toml"
    cfg.write_text("")
    async with DockerClient(str(tmp_path / "no-docker.sock")) as docker:
        yield CheckContext(load_settings(cfg), Host(tmp_path), docker)


async def test_checks_run_concurrently(ctx: CheckContext) -> None:
    barrier = asyncio.Barrier(3)

    async def meet(_: CheckContext) -> Outcome:
        # Only passes if all three checks are waiting at the same time.
        async with asyncio.timeout(5):
            await barrier.wait()
        return passed("met")

    checks = [make(c, meet) for c in ("a", "b", "c")]
    results = await run_checks(ctx, checks)
    assert [r.status for r in results] == [Status.PASS] * 3


async def test_a_hanging_check_becomes_error_and_the_rest_still_run(ctx: CheckContext) -> None:
    async def hang(_: CheckContext) -> Outcome:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    results = await run_checks(ctx, [make("hang", hang, timeout=0.2), make("ok", ok)])
    assert results[0].status is Status.ERROR
    assert results[0].summary == "no result within 0.2 s"
    assert "kedge-agent check --only hang" in results[0].remedy
    assert results[1].status is Status.PASS


async def test_default_timeout_applies_without_a_check_timeout(ctx: CheckContext) -> None:
    async def hang(_: CheckContext) -> Outcome:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    results = await run_checks(ctx, [make("hang", hang)], default_timeout=0.1)
    assert results[0].summary == "no result within 0.1 s"


async def test_raising_checks_become_errors(ctx: CheckContext) -> None:
    async def crash(_: CheckContext) -> Outcome:
        raise ZeroDivisionError("boom")

    async def probe_fails(_: CheckContext) -> Outcome:
        raise ProbeError("10.0.0.1:10002: timed out after 3 s")

    with capture_logs() as logs:
        results = await run_checks(ctx, [make("crash", crash), make("probe", probe_fails)])
    crashed = [e for e in logs if e["event"] == "check.crashed"]
    assert len(crashed) == 1
    assert crashed[0]["check"] == "crash"
    assert crashed[0]["log_level"] == "error"
    assert results[0].status is Status.ERROR
    assert results[0].summary == "internal error: ZeroDivisionError: boom"
    assert "bug in kedge-agent" in results[0].remedy
    assert results[1].status is Status.ERROR
    assert results[1].summary == "10.0.0.1:10002: timed out after 3 s"
    assert results[1].details == {"error": "ProbeError"}


async def test_dependents_are_skipped_when_the_dependency_fails(ctx: CheckContext) -> None:
    results = await run_checks(
        ctx,
        [
            make("dep", bad),
            make("child", ok, needs=("dep",)),
            make("grandchild", ok, needs=("child",)),
        ],
    )
    assert [r.status for r in results] == [Status.FAIL, Status.SKIP, Status.SKIP]
    assert results[1].summary == "needs the dep check, which did not pass (fail)"
    assert results[2].summary == "needs the child check, which did not pass (skip)"


async def test_dependents_run_after_a_passing_dependency(ctx: CheckContext) -> None:
    order: list[str] = []

    async def first(_: CheckContext) -> Outcome:
        await asyncio.sleep(0)  # yield, so a wrongly unordered child would run first
        order.append("dep")
        return passed("dep ok")

    async def second(_: CheckContext) -> Outcome:
        order.append("child")
        return passed("child ok")

    results = await run_checks(ctx, [make("child", second, needs=("dep",)), make("dep", first)])
    assert order == ["dep", "child"]
    assert [r.id for r in results] == ["child", "dep"]


async def test_ignore_downgrades_fail_to_warn(ctx: CheckContext) -> None:
    (result,) = await run_checks(ctx, [make("dep", bad)], ignore=["dep"])
    assert result.status is Status.WARN
    assert result.summary == "broken (failure ignored by --ignore)"
    assert result.details["ignored_failure"] is True


def test_select_pulls_in_dependencies_and_honours_skip() -> None:
    table = {c.id: c for c in (make("a", ok), make("b", ok, needs=("a",)), make("c", ok))}
    assert [c.id for c in select(["b"], [], table)] == ["a", "b"]
    assert [c.id for c in select([], ["a"], table)] == ["b", "c"]
    assert [c.id for c in select([], [], table)] == ["a", "b", "c"]
    with pytest.raises(KeyError, match="nope"):
        select(["nope"], [], table)


async def test_missing_dependency_is_a_skip(ctx: CheckContext) -> None:
    (result,) = await run_checks(ctx, [make("child", ok, needs=("gone",))])
    assert result.status is Status.SKIP
    assert result.summary == "needs the gone check, which was not run"

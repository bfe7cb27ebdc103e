"""Background jobs: one at a time, secrets never stored, followers see every line."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cloud_api.jobs import Busy, Job, JobFailed, Jobs
from kedge.redact import redact

TOKEN = "a" * 64 + ".eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDB9.c2lnbmF0dXJl"


def test_redact_hides_tokens_jwts_bearers_and_named_secrets() -> None:
    line = f"token {TOKEN} jwt eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.sig Authorization: Bearer s3cr3t pw hunter2"
    assert redact(line, "hunter2") == (
        "token <redacted> jwt <redacted> Authorization: Bearer <redacted> pw <redacted>"
    )


async def test_a_job_runs_alone_logs_redacted_and_is_followed_to_its_end() -> None:
    jobs = Jobs()
    release = asyncio.Event()

    async def work(job: Job) -> dict[str, Any]:
        job.enter("step one")
        job.log(f"got {TOKEN}")
        await release.wait()
        return {"ok": True}

    job = jobs.start("demo", work)
    with pytest.raises(Busy):
        jobs.start("other", work)
    seen: list[tuple[str, Any]] = []
    async with asyncio.timeout(5):
        async for event in job.follow(idle_s=0.05):
            seen.append(event)
            if len(seen) == 2:
                release.set()  # both lines were seen live, before the job ended
    lines = [d[1]["line"] for kind, d in seen if kind == "line"]
    assert lines == ["-- step one", "got <redacted>"]
    assert seen[-1][0] == "end"
    assert seen[-1][1]["state"] == "succeeded"
    assert jobs.running() is None


async def test_a_failed_job_keeps_its_reason() -> None:
    jobs = Jobs()

    async def work(job: Job) -> dict[str, Any]:
        raise JobFailed("cloudcore could not start", {"event": "FailedScheduling"})

    job = jobs.start("demo", work)
    async with asyncio.timeout(5):
        events = [kind async for kind, _ in job.follow()]
    assert events == ["line", "end"]
    assert job.error == {
        "message": "cloudcore could not start",
        "details": {"event": "FailedScheduling"},
    }

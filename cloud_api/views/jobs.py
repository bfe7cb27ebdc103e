"""Background jobs: their state, and their log lines live as server-sent events."""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web

from cloud_api.errors import ApiError
from cloud_api.jobs import Job
from cloud_api.jsonout import dumps, json_response
from cloud_api.models import JobView
from cloud_api.routing import JOBS, STORE, Route, long_request


def _job(request: web.Request) -> Job | dict[str, Any]:
    """The running or recent job, or the kept outcome of one from an earlier run of
    the service (its log lines are not kept)."""
    job_id = request.match_info["id"]
    job = request.app[JOBS].get(job_id)
    if job is not None:
        return job
    kept = request.app[STORE].job(job_id)
    if kept is not None:
        return kept
    raise ApiError(404, "not_found", f"no job {job_id!r}")


async def get_job(request: web.Request) -> web.Response:
    job = _job(request)
    view = job.view() if isinstance(job, Job) else job
    return json_response(JobView.model_validate(view).model_dump())


async def job_events(request: web.Request) -> web.StreamResponse:
    return await long_request(request, "event streams", _job_events)


async def _job_events(request: web.Request) -> web.StreamResponse:
    """`event: line` per log line (its id is the line's number, so Last-Event-ID
    resumes; without it the stream starts near the end), comments as keep-alives, then
    `event: end` with the whole job."""
    job = _job(request)
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    response.headers["X-Request-Id"] = request.get("request_id", "")
    if not isinstance(job, Job):
        await response.prepare(request)
        await response.write(f"event: end\ndata: {dumps(job)}\n\n".encode())
        await response.write_eof()
        return response
    start: int | None = None  # the tail, not the whole log
    with contextlib.suppress(ValueError):
        start = int(request.headers.get("Last-Event-ID", "")) + 1
    await response.prepare(request)
    async for kind, data in job.follow(start):
        if kind == "ping":
            await response.write(b": ping\n\n")
        elif kind == "line":
            n, line = data
            await response.write(f"id: {n}\nevent: line\ndata: {dumps(line)}\n\n".encode())
        else:
            await response.write(f"event: end\ndata: {dumps(data)}\n\n".encode())
    await response.write_eof()
    return response


ROUTES = (
    Route(
        "GET",
        "/api/v1/jobs/{id}",
        get_job,
        "a background job: phase, log lines, result",
        admin=True,
        response=JobView,
        also={404: ("no such job", None)},
    ),
    Route(
        "GET",
        "/api/v1/jobs/{id}/events",
        job_events,
        "a job's log lines as server-sent events, then its end",
        admin=True,
        content_type="text/event-stream",
        also={404: ("no such job", None)},
    ),
)

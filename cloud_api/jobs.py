"""Background jobs: one mutating cloudcore operation at a time, each with phases, log
lines (secrets redacted before they are stored) and a final result, followed live by
GET /api/v1/jobs/{id}/events (server-sent events)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from kedge.redact import redact

log = structlog.get_logger(__name__)
KEPT_JOBS = 50
# A job keeps its first HEAD_LINES and its last TAIL_LINES log lines, each cut at
# MAX_LINE_CHARS: a keadm that prints without end costs at most a few MB.
HEAD_LINES, TAIL_LINES, MAX_LINE_CHARS = 200, 1000, 4096
# An event stream without Last-Event-ID starts this many lines before the end.
STREAM_BACKLOG = 200


class JobFailed(Exception):
    """The job's operation failed: the message is what the user reads; details add evidence."""

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


class Busy(Exception):
    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} ({job.kind}) is still running")
        self.job = job


@dataclass
class Job:
    id: str
    kind: str
    state: Literal["running", "succeeded", "failed", "interrupted"] = "running"
    phase: str = "queued"
    created: float = field(default_factory=time.time)
    finished: float | None = None
    head: list[dict[str, Any]] = field(default_factory=list)
    tail: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    total: int = 0  # lines ever logged; a line's number is its event id
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    def log(self, line: str) -> None:
        if len(line) > MAX_LINE_CHARS:
            line = (
                f"{line[:MAX_LINE_CHARS]} [line cut: {len(line) - MAX_LINE_CHARS} more characters]"
            )
        entry = {"t": round(time.time(), 3), "phase": self.phase, "line": redact(line)}
        (self.head if len(self.head) < HEAD_LINES else self.tail).append(entry)
        self.total += 1
        self._notify()

    @property
    def dropped(self) -> int:
        return self.total - len(self.head) - len(self.tail)

    def line(self, n: int) -> dict[str, Any] | None:
        """Line number n, or None when it was dropped from the middle."""
        if n < len(self.head):
            return self.head[n]
        first_tail = self.total - len(self.tail)
        return self.tail[n - first_tail] if n >= first_tail else None

    def _gap(self) -> dict[str, Any]:
        return {"t": round(time.time(), 3), "phase": self.phase,
                "line": f"[{self.dropped} lines not kept]"}  # fmt: skip

    @property
    def lines(self) -> list[dict[str, Any]]:
        """The kept lines, a marker where the middle was dropped."""
        return [*self.head, *([self._gap()] if self.dropped else []), *self.tail]

    def enter(self, phase: str) -> None:
        self.phase = phase
        self.log(f"-- {phase}")

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def finish(self, result: dict[str, Any] | None, error: dict[str, Any] | None) -> None:
        self.state = "failed" if error else "succeeded"
        self.result, self.error, self.finished = result, error, time.time()
        self._notify()

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "phase": self.phase,
            "created": self.created,
            "finished": self.finished,
            "lines": self.lines,
            "lines_dropped": self.dropped,
            "result": self.result,
            "error": self.error,
        }

    async def follow(
        self, start: int | None = 0, *, idle_s: float = 15.0
    ) -> AsyncIterator[tuple[str, Any]]:
        """("line", (n, line)) for each kept log line from number `start` (None: the last
        STREAM_BACKLOG), one ("line", (n, marker)) where lines were not kept, ("ping",
        None) when idle, then ("end", view) once the job is done."""
        sent = max(0, self.total - STREAM_BACKLOG) if start is None else max(0, start)
        while True:
            changed = self._changed
            while sent < self.total:
                line = self.line(sent)
                if line is None:  # dropped: say so once, continue from the oldest kept
                    sent = self.total - len(self.tail)
                    yield "line", (sent - 1, self._gap())
                    continue
                yield "line", (sent, line)
                sent += 1
            if self.state != "running":
                yield "end", self.view()
                return
            try:
                async with asyncio.timeout(idle_s):
                    await changed.wait()
            except TimeoutError:
                yield "ping", None


class Jobs:
    """The registry; at most one job runs at a time (keadm and the cluster are one)."""

    def __init__(self, record: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._tasks: set[asyncio.Task[None]] = set()
        # Each job's start and end are kept (the store) so that after a crash or SIGKILL
        # of the service, the job is reported as interrupted rather than forgotten.
        self._record = record

    def _save(self, job: Job) -> None:
        if self._record is not None:
            try:
                self._record(job.view())
            except Exception:
                log.exception("job.record_failed", job_id=job.id)

    def running(self) -> Job | None:
        return next((j for j in self._jobs.values() if j.state == "running"), None)

    def get(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def start(self, kind: str, work: Callable[[Job], Awaitable[dict[str, Any]]]) -> Job:
        if (busy := self.running()) is not None:
            raise Busy(busy)
        job = Job(id=secrets.token_hex(6), kind=kind)
        self._jobs[job.id] = job
        while len(self._jobs) > KEPT_JOBS:
            self._jobs.popitem(last=False)
        self._save(job)
        task = asyncio.create_task(self._run(job, work), name=f"job-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: Job, work: Callable[[Job], Awaitable[dict[str, Any]]]) -> None:
        with structlog.contextvars.bound_contextvars(job_id=job.id, job=job.kind):
            log.info("job.started")
            try:
                result = await work(job)
            except JobFailed as exc:
                job.log(f"failed: {exc}")
                job.finish(None, {"message": redact(str(exc)), "details": exc.details})
            except asyncio.CancelledError:
                job.finish(
                    None, {"message": "the service stopped before the job finished", "details": {}}
                )
                self._save(job)
                raise
            except Exception as exc:
                log.exception("job.crashed")
                job.finish(
                    None,
                    {
                        "message": f"internal error: {type(exc).__name__}; see the server log",
                        "details": {},
                    },
                )
            else:
                job.finish(result, None)
            self._save(job)
            log.info("job.finished", state=job.state, phase=job.phase)

    async def close(self) -> None:
        """Shutdown: cancel what still runs (its subprocesses are killed and reaped)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

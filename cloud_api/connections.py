"""Connection limits for the HTTP server: a bound on open connections, and a deadline
for each request's headers.

aiohttp closes a connection that sends nothing (its keep-alive timeout), but one that
sends part of a request line or of its headers is waited on forever; a thousand of them
used every file descriptor and starved /healthz. Each connection is wrapped in a thin
protocol that forwards everything to aiohttp's own handler and keeps two facts: whether
a request is being handled (the middleware says so) and since when a request has been
awaited (from the accept, or from the first byte after the previous request). A request
whose headers are not in within `header_timeout_s` of that is cut. At the connection
limit a new connection replaces the one that has been waiting longest for its headers
(at least a second); with none such, it is refused.
Request bodies have their own deadline where they are read (routing.read_body).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, cast

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)
LOG_EVERY_S = 60.0


class Guard:
    """Counts and polices the server's connections; one per listening site."""

    def __init__(self, max_connections: int, header_timeout_s: float) -> None:
        self.max_connections = max_connections
        self.header_timeout_s = header_timeout_s
        self._live: dict[asyncio.BaseProtocol, _Guarded] = {}
        self.cut = self.refused = 0
        self._logged_at = 0.0

    def __len__(self) -> int:
        return len(self._live)

    def factory(self, inner: Callable[[], asyncio.BaseProtocol]) -> Callable[[], asyncio.Protocol]:
        def make() -> asyncio.Protocol:
            if len(self._live) >= self.max_connections and not self._evict():
                self.refused += 1
                self._note("http.connection_limit", refused=self.refused)
                return _Refused()
            return _Guarded(self, inner())

        return make

    # The middleware's view: a request on this connection is being handled, or is done.
    def request_started(self, request: web.Request) -> None:
        guarded = self._live.get(cast(asyncio.BaseProtocol, request.protocol))
        if guarded is not None:
            guarded.in_request += 1
            guarded.disarm()

    def request_finished(self, request: web.Request) -> None:
        guarded = self._live.get(cast(asyncio.BaseProtocol, request.protocol))
        if guarded is not None:
            guarded.in_request = max(0, guarded.in_request - 1)

    def _evict(self) -> bool:
        # Only a connection that has had a fair chance to send its request: a burst of
        # new ones must not push out a client that connected a moment ago.
        grace = min(1.0, self.header_timeout_s / 4)
        now = time.monotonic()
        waiting = [
            g for g in self._live.values()
            if g.waiting_since is not None and now - g.waiting_since >= grace
        ]  # fmt: skip
        if not waiting:
            return False
        oldest = min(waiting, key=lambda g: g.waiting_since or 0.0)
        self.cut += 1
        self._note("http.slow_connection_cut", reason="connection limit", cut=self.cut)
        oldest.abort()
        return True

    def _note(self, event: str, **fields: Any) -> None:
        # A flood must not become a flood of log lines: one line a minute at most.
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.warning(event, open=len(self._live), limit=self.max_connections, **fields)

    def _track(self, guarded: _Guarded) -> None:
        self._live[guarded.inner] = guarded

    def _forget(self, guarded: _Guarded) -> None:
        self._live.pop(guarded.inner, None)

    def _timed_out(self, guarded: _Guarded) -> None:
        self.cut += 1
        self._note("http.slow_connection_cut", reason="headers too slow", cut=self.cut)
        guarded.abort()


class _Guarded(asyncio.Protocol):
    def __init__(self, guard: Guard, inner: asyncio.BaseProtocol) -> None:
        self.guard, self.inner = guard, cast(asyncio.Protocol, inner)
        self.transport: asyncio.Transport | None = None
        self.in_request = 0
        self.waiting_since: float | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.guard._track(self)
        # From the accept on, a request is awaited: a burst of new connections is
        # evictable before any of them has sent a byte.
        self._arm()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.in_request == 0 and self.waiting_since is None:
            self._arm()
        self.inner.data_received(data)

    def _arm(self) -> None:
        self.waiting_since = time.monotonic()
        self._timer = asyncio.get_running_loop().call_later(
            self.guard.header_timeout_s, self.guard._timed_out, self
        )

    def disarm(self) -> None:
        self.waiting_since = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def abort(self) -> None:
        self.disarm()
        if self.transport is not None:
            self.transport.abort()

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        self.guard._forget(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class _Refused(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).abort()


class GuardedSite(web.TCPSite):
    """TCPSite whose connections go through a Guard."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, *, guard: Guard,
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(runner, host, port, **kwargs)
        self.guard = guard

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        self._server = await asyncio.get_running_loop().create_server(
            self.guard.factory(server),
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=self._reuse_address,
            reuse_port=self._reuse_port,
        )

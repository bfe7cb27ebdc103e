"""Connection limits for the HTTP server: a bound on open connections in all and per
source address, a deadline for each request's headers, and who gives way at a limit.

aiohttp closes a connection that sends nothing for its keep-alive timeout, but one that
sends part of a request is waited on forever, and one that sends a request every 10 s
is never idle for long enough: 512 of either held every slot and starved /healthz. Each
connection is wrapped in a thin protocol that forwards everything to aiohttp's own
handler and keeps two facts: whether the server is working on a request for it (the
middleware says so), and since when it has been waiting on the client instead — for a
request's headers (from the accept, or from the end of the previous request), or for a
request's body (routing.read_body says so). Headers not in within `header_timeout_s`
cut the connection.

A connection the server is waiting on is evictable: when a new connection arrives at
the per-address limit, it replaces the one of its own address the server has waited on
longest; at the total limit, that of the address holding the most connections, if that
is more than the newcomer's address would hold; among equals, only one that has had a
fair chance (`GRACE_S`). With none such it is refused. So whatever one host does with
its sockets, a client that connects and sends its request at once is served; the
requests that stay open by design (event streams, `?wait=`) are bounded apart (`Slots`).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import structlog
from aiohttp import web

log = structlog.get_logger(__name__)
LOG_EVERY_S = 60.0
GRACE_S = 1.0  # at most; a quarter of header_timeout_s when that is shorter


class Guard:
    """Counts and polices the server's connections; one per listening site."""

    def __init__(
        self, max_connections: int, header_timeout_s: float, max_per_address: int | None = None
    ) -> None:
        self.max_connections = max_connections
        self.max_per_address = max_per_address or max_connections
        self.header_timeout_s = header_timeout_s
        self._live: dict[asyncio.BaseProtocol, _Guarded] = {}
        self._by_address: Counter[str] = Counter()
        self.cut = self.refused = 0
        self._logged_at = 0.0

    def __len__(self) -> int:
        return len(self._live)

    def factory(self, inner: Callable[[], asyncio.BaseProtocol]) -> Callable[[], asyncio.Protocol]:
        def make() -> asyncio.Protocol:
            return _Guarded(self, inner())

        return make

    # The middleware's and read_body's view of a request on this connection.
    def request_started(self, request: web.Request) -> None:
        guarded = self._guarded(request)
        if guarded is not None:
            guarded.in_request += 1
            guarded.disarm()

    def request_finished(self, request: web.Request) -> None:
        guarded = self._guarded(request)
        if guarded is not None:
            guarded.in_request = max(0, guarded.in_request - 1)
            if guarded.in_request == 0:
                # Waiting for the next request from now: evictable, and the next request's
                # headers are due within header_timeout_s (a keep-alive that sends one
                # request every 10 s is no longer held for ever).
                guarded.arm()

    @contextmanager
    def reading_body(self, request: web.Request) -> Iterator[None]:
        """While a handler waits for a request's body the server waits on the client:
        the connection is evictable like one that is slow with its headers."""
        guarded = self._guarded(request)
        if guarded is not None:
            guarded.waiting_since = time.monotonic()
        try:
            yield
        finally:
            if guarded is not None:
                guarded.waiting_since = None

    def gone(self, request: web.Request) -> asyncio.Future[None]:
        """Done when the request's client has closed its connection (aiohttp does not
        cancel a handler then: a stream would hold its slot until its next write)."""
        guarded = self._guarded(request)
        if guarded is None:
            lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            lost.set_result(None)
            return lost
        return guarded.lost()

    def _guarded(self, request: web.Request) -> _Guarded | None:
        return self._live.get(cast(asyncio.BaseProtocol, request.protocol))

    def _admit(self, new: _Guarded) -> bool:
        """Make room for a new connection from `new.address`, or say it must be refused."""
        address = new.address
        mine = self._by_address[address]
        if mine >= self.max_per_address:
            return self._evict(lambda g: g.address == address, "address limit")
        if len(self._live) < self.max_connections:
            return True
        # An address holding more than the newcomer's would gives way first, whatever its
        # connections' age: a host with one connection is never pushed out by a host
        # knocking with hundreds. Among equals, only one that had a fair chance.
        heavier = {a: n for a, n in self._by_address.items() if n > mine + 1}
        for heaviest in sorted(heavier, key=heavier.__getitem__, reverse=True):
            if self._evict(lambda g, a=heaviest: g.address == a, "connection limit"):  # type: ignore[misc]
                return True
        return self._evict(
            lambda g: True, "connection limit", grace=min(GRACE_S, self.header_timeout_s / 4)
        )

    def _evict(self, among: Callable[[_Guarded], bool], reason: str, grace: float = 0.0) -> bool:
        """Cut the connection among `among` the server has waited on longest (at least
        `grace`); False when there is none."""
        now = time.monotonic()
        waiting = [
            g
            for g in self._live.values()
            if g.waiting_since is not None and now - g.waiting_since >= grace and among(g)
        ]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda g: g.waiting_since or 0.0)
        self.cut += 1
        self._note("http.slow_connection_cut", reason=reason, cut=self.cut)
        oldest.abort()
        return True

    def _note(self, event: str, **fields: Any) -> None:
        # A flood must not become a flood of log lines: one line a minute at most.
        now = time.monotonic()
        if now - self._logged_at >= LOG_EVERY_S:
            self._logged_at = now
            log.warning(event, open=len(self._live), limit=self.max_connections, **fields)

    def _track(self, guarded: _Guarded) -> bool:
        if not self._admit(guarded):
            self.refused += 1
            self._note("http.connection_limit", refused=self.refused, address=guarded.address)
            return False
        self._live[guarded.inner] = guarded
        self._by_address[guarded.address] += 1
        return True

    def _forget(self, guarded: _Guarded) -> None:
        if self._live.pop(guarded.inner, None) is not None:
            self._by_address[guarded.address] -= 1
            if self._by_address[guarded.address] <= 0:
                del self._by_address[guarded.address]

    def _timed_out(self, guarded: _Guarded) -> None:
        self.cut += 1
        self._note("http.slow_connection_cut", reason="headers too slow", cut=self.cut)
        guarded.abort()


class _Guarded(asyncio.Protocol):
    def __init__(self, guard: Guard, inner: asyncio.BaseProtocol) -> None:
        self.guard, self.inner = guard, cast(asyncio.Protocol, inner)
        self.transport: asyncio.Transport | None = None
        self.address = ""
        self.in_request = 0
        self.waiting_since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._admitted = False
        self._lost: asyncio.Future[None] | None = None

    def lost(self) -> asyncio.Future[None]:
        if self._lost is None:
            self._lost = asyncio.get_running_loop().create_future()
        return self._lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        if not self.guard._track(self):
            self.transport.abort()
            return
        self._admitted = True
        # From the accept on, a request is awaited: a burst of new connections is
        # evictable before any of them has sent a byte.
        self.arm()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._admitted:
            self.inner.data_received(data)

    def arm(self) -> None:
        self.disarm()
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
        return self.inner.eof_received() if self._admitted else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        if not self._admitted:
            return
        self.guard._forget(self)
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self._admitted:
            self.inner.resume_writing()


class Slots:
    """Requests that stay open by design (event streams, `?wait=`): at most `total` at
    once, and at most `per_key` for one credential, so one token's tabs or scripts cannot
    take every slot. take() is a context manager yielding whether a slot was had."""

    def __init__(self, total: int, per_key: int) -> None:
        self.total, self.per_key = total, per_key
        self._held: Counter[str] = Counter()

    @staticmethod
    def key(request: web.Request) -> str:
        """Who holds the slot: the credential presented (hashed; never kept as is)."""
        presented = request.headers.get("Authorization", "").encode("utf-8", "replace")
        return hashlib.sha256(presented).hexdigest()[:16]

    @contextmanager
    def take(self, key: str) -> Iterator[bool]:
        if sum(self._held.values()) >= self.total or self._held[key] >= self.per_key:
            yield False
            return
        self._held[key] += 1
        try:
            yield True
        finally:
            self._held[key] -= 1
            if self._held[key] <= 0:
                del self._held[key]


class GuardedSite(web.TCPSite):
    """TCPSite whose connections go through a Guard."""

    def __init__(
        self, runner: web.BaseRunner, host: str, port: int, *, guard: Guard, **kwargs: Any
    ) -> None:
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

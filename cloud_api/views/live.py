"""The fleet, live: server-sent events with the summary of every board whose record
changed, and the dashboard page that shows them (no build step, nothing fetched from
elsewhere: cloud_api/static/)."""

from __future__ import annotations

import asyncio
import time
from importlib import resources
from typing import Any

from aiohttp import web

from cloud_api.fleet.view import wire
from cloud_api.jsonout import dumps
from cloud_api.routing import FLEET, SETTINGS, Route, long_request

KEEPALIVE_S = 15.0
BACKLOG = 256
# The page loads only its own script and style and talks only to this service.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
STATIC = {
    "/": ("dashboard.html", "text/html"),
    "/dashboard.js": ("dashboard.js", "text/javascript"),
    "/dashboard.css": ("dashboard.css", "text/css"),
}


async def static(request: web.Request) -> web.Response:
    name, kind = STATIC[request.path]
    body = resources.files("cloud_api").joinpath("static", name).read_bytes()
    return web.Response(body=body, content_type=kind, charset="utf-8",
                        headers={"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                                 "Cache-Control": "no-cache"})  # fmt: skip


async def events(request: web.Request) -> web.StreamResponse:
    return await long_request(request, "event streams", _events)


async def _events(request: web.Request) -> web.StreamResponse:
    """`event: nodes` with a JSON list of board summaries whenever boards' records
    change; `event: verify` with a verify job's result when one finishes; `event:
    resync` when this client fell too far behind (refetch the table); a comment every
    KEEPALIVE_S."""
    fleet, stale = request.app[FLEET], request.app[SETTINGS].fleet.stale_after_s
    pending: asyncio.Queue[set[str]] = asyncio.Queue(maxsize=BACKLOG)
    overflow = False
    verified: dict[str, Any] | None = None

    def changed(names: set[str]) -> None:
        nonlocal overflow
        try:
            pending.put_nowait(names)
        except asyncio.QueueFull:
            overflow = True

    def verify_done(result: dict[str, Any]) -> None:
        nonlocal verified
        verified = result
        changed(set())

    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Request-Id": request.get("request_id", "")})  # fmt: skip
    await response.prepare(request)
    fleet.listeners.add(changed)
    fleet.verify_listeners.add(verify_done)
    try:
        await response.write(b"event: hello\ndata: {}\n\n")
        while True:
            try:
                names = await asyncio.wait_for(pending.get(), KEEPALIVE_S)
            except TimeoutError:
                await response.write(b": ping\n\n")
                continue
            while not pending.empty():
                names |= pending.get_nowait()
            if verified is not None:
                await response.write(f"event: verify\ndata: {dumps(verified)}\n\n".encode())
                verified = None
            if overflow:
                overflow = False
                await response.write(b"event: resync\ndata: {}\n\n")
                continue
            if not names:
                continue
            now, items = time.time(), []
            for name in sorted(names):
                found = fleet.store.node(name)
                if found is not None:
                    items.append(wire(found[0], now, stale))
            await response.write(f"event: nodes\ndata: {dumps(items)}\n\n".encode())
    except (ConnectionResetError, ConnectionError):
        pass  # the browser went away
    finally:
        fleet.listeners.discard(changed)
        fleet.verify_listeners.discard(verify_done)
    return response


ROUTES = (
    Route("GET", "/", static, "the fleet dashboard (asks for the admin token)", content_type="text/html"),
    Route("GET", "/dashboard.js", static, "the dashboard's script", content_type="text/javascript"),
    Route("GET", "/dashboard.css", static, "the dashboard's style", content_type="text/css"),
    Route("GET", "/api/v1/events", events, "boards' summaries as they change (server-sent events)",
          admin=True, content_type="text/event-stream"),
)  # fmt: skip

"""Liveness, readiness and the API's own description."""

from __future__ import annotations

import time

from aiohttp import web

from cloud_api import __version__
from cloud_api.errors import ApiError
from cloud_api.jsonout import json_response
from cloud_api.routing import FLEET, SETTINGS, STORE, Route

OPENAPI = web.AppKey("openapi", dict)


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    if not request.app[STORE].ping():
        raise ApiError(503, "not_ready", "the database does not answer")
    ingest = request.app[FLEET].ingest
    bound = request.app[SETTINGS].fleet.ingest_down_ready_s
    if ingest is not None and (down := ingest.stats.down_for(time.monotonic())) > bound:
        raise ApiError(
            503,
            "not_ready",
            f"the fleet ingest has had no broker link for {down:.0f} s (limit {bound:g} s): "
            f"{ingest.stats.last_error or 'not connected yet'}",
        )
    return json_response({"status": "ready"})


async def openapi(request: web.Request) -> web.Response:
    return json_response(request.app[OPENAPI])


ROUTES = (
    Route("GET", "/healthz", healthz, "liveness: the process answers"),
    Route("GET", "/readyz", readyz, "readiness: the database answers and the ingest is up"),
    Route("GET", "/api/v1/openapi.json", openapi, "this document"),
)

"""Liveness, readiness and the API's own description."""

from __future__ import annotations

from aiohttp import web

from cloud_api import __version__
from cloud_api.errors import ApiError
from cloud_api.routing import STORE, Route

OPENAPI = web.AppKey("openapi", dict)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    if not request.app[STORE].ping():
        raise ApiError(503, "not_ready", "the database does not answer")
    return web.json_response({"status": "ready"})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])


ROUTES = (
    Route("GET", "/healthz", healthz, "liveness: the process answers"),
    Route("GET", "/readyz", readyz, "readiness: the database answers"),
    Route("GET", "/api/v1/openapi.json", openapi, "this document"),
)

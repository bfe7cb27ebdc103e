"""The route table's shape, the app's shared objects, request-body parsing, and the
OpenAPI document generated from the route table (so the two cannot drift)."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from cloud_api import __version__
from cloud_api.broker.admin import BrokerAdmin
from cloud_api.cloudcore import Cloudcore
from cloud_api.connections import Guard, Slots
from cloud_api.errors import ApiError
from cloud_api.fleet.service import Fleet
from cloud_api.jobs import Busy, Jobs
from cloud_api.settings import CloudSettings
from cloud_api.store import Store
from cloud_api.throttle import Throttle

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STORE = web.AppKey("store", Store)
ADMIN_TOKEN = web.AppKey("admin_token", str)
JOBS = web.AppKey("jobs", Jobs)
CLOUDCORE = web.AppKey("cloudcore", Cloudcore)
SETTINGS = web.AppKey("settings", CloudSettings)
GUARD = web.AppKey("guard", Guard)
SLOTS = web.AppKey("slots", Slots)
ENROLL_THROTTLE = web.AppKey("enroll_throttle", Throttle)
FLEET = web.AppKey("fleet", Fleet)
# Set when boards get their own broker identities ([broker] admin_password_file).
BROKER_ADMIN = web.AppKey[BrokerAdmin | None]("broker_admin")


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    admin: bool = False
    request: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    many: bool = False
    status: int = 200
    # other documented outcomes: status -> (description, body model or None for the error shape)
    also: dict[int, tuple[str, type[BaseModel] | None]] = field(default_factory=dict)
    content_type: str = "application/json"
    # query parameter -> (description, JSON schema); path parameter -> JSON schema
    query: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    params: dict[str, dict[str, Any]] = field(default_factory=dict)


def busy(exc: Busy) -> ApiError:
    """409: another job runs, and where to follow it."""
    return ApiError(
        409, "busy", f"{exc}; follow it at /api/v1/jobs/{exc.job.id}", {"job": exc.job.id}
    )


async def long_request(
    request: web.Request, what: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Run a request that stays open (an event stream) in one of the slots for them —
    429 when the caller's or everyone's are taken — and end it as soon as its client is
    gone, giving the slot back."""
    slots = request.app[SLOTS]
    with slots.take(Slots.key(request)) as had:
        if not had:
            raise ApiError(
                429,
                "too_many_streams",
                f"too many open {what}: at most {slots.per_key} per credential and "
                f"{slots.total} in all (close one, or raise long_requests_max)",
                headers={"Retry-After": "5"},
            )
        work = asyncio.ensure_future(handler(request))
        gone = request.app[GUARD].gone(request)
        try:
            waiting: list[asyncio.Future[Any]] = [work, gone]
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not work.done():
                work.cancel()
        return await work


async def read_body(request: web.Request, model: type[BaseModel]) -> Any:
    if not request.can_read_body:
        raise ApiError(
            400, "no_body", "a JSON object is required as the request body ({} for the defaults)"
        )
    deadline = request.app[SETTINGS].body_timeout_s
    try:
        with request.app[GUARD].reading_body(request):
            async with asyncio.timeout(deadline):
                data = await request.read()
    except TimeoutError:
        raise ApiError(
            408, "body_timeout", f"the request body did not arrive within {deadline:g} s"
        ) from None
    try:
        raw = json.loads(data)
    except RecursionError:
        raise ApiError(400, "bad_json", "request body is not JSON: nested too deeply") from None
    except ValueError as exc:
        # JSONDecodeError, UnicodeDecodeError and int()'s digit limit are all ValueErrors.
        raise ApiError(400, "bad_json", f"request body is not JSON: {exc}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        details = {
            ".".join(str(p) for p in e["loc"]) or "body": e["msg"].removeprefix("Value error, ")
            for e in exc.errors(include_url=False)
        }
        raise ApiError(422, "invalid", "the request body is not valid", details) from exc


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}


def openapi_document(routes: Sequence[Route]) -> dict[str, Any]:
    schemas: dict[str, Any] = {"Error": ERROR_SCHEMA}
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        responses: dict[str, Any] = {"default": {"description": "error", "content": error}}
        if r.content_type == "application/json":
            ok: dict[str, Any] = {"type": "object"}
            if r.response is not None:
                ok = {"type": "array", "items": ref(r.response)} if r.many else ref(r.response)
        elif r.content_type == "text/event-stream":
            ok = {"description": "server-sent events; each event's data is JSON"}  # any JSON
        else:
            ok = {"type": "string"}
        responses[str(r.status)] = {
            "description": "success",
            "content": {r.content_type: {"schema": ok}},
        }
        for status, (description, model) in r.also.items():
            body = {"application/json": {"schema": ref(model)}} if model else error
            responses[str(status)] = {"description": description, "content": body}
        op: dict[str, Any] = {"summary": r.summary, "responses": responses}
        params = [
            {
                "name": p,
                "in": "path",
                "required": True,
                "schema": r.params.get(p, {"type": "string"}),
            }
            for p in re.findall(r"{(\w+)}", r.path)
        ] + [
            {"name": q, "in": "query", "required": False, "description": d, "schema": schema}
            for q, (d, schema) in r.query.items()
        ]
        if params:
            op["parameters"] = params
        if r.request is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ref(r.request)}},
            }
            responses.setdefault("400", {"description": "the body is not JSON", "content": error})
            responses.setdefault("422", {"description": "the body is not valid", "content": error})
        if r.admin:
            op["security"] = [{"admin": []}]
            responses["401"] = {"description": "missing or wrong credentials", "content": error}
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "kedge cloud API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}},
        },
    }

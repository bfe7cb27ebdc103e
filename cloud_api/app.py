"""The aiohttp application: routes, the error/request-id middleware, admin auth, and
the OpenAPI document generated from the same route table (so they cannot drift)."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cloud_api import __version__
from cloud_api.auth import bearer_matches
from cloud_api.errors import UNAUTHORIZED, ApiError
from cloud_api.store import Store

log = structlog.get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STORE = web.AppKey("store", Store)
ADMIN_TOKEN = web.AppKey("admin_token", str)


class SecretRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ttl_s: float | None = Field(None, gt=0, le=365 * 86400, description="seconds until it expires")
    uses: int | None = Field(
        None, ge=1, le=100000, description="how many boards may enroll with it"
    )
    note: str = Field("", max_length=200)


class SecretCreated(BaseModel):
    id: str
    secret: str = Field(description="shown once; only its hash is stored")
    expires_at: float | None
    uses_left: int | None


class SecretInfo(BaseModel):
    id: str
    created: float
    expires_at: float | None
    uses_left: int | None
    note: str


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
    extra: dict[str, Any] = field(default_factory=dict)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "version": __version__})


async def readyz(request: web.Request) -> web.Response:
    if not request.app[STORE].ping():
        raise ApiError(503, "not_ready", "the database does not answer")
    return web.json_response({"status": "ready"})


async def _body(request: web.Request, model: type[BaseModel]) -> Any:
    try:
        raw = await request.json() if request.can_read_body else {}
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "bad_json", f"request body is not JSON: {exc.msg} at line {exc.lineno}"
        ) from exc
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        details = {
            ".".join(str(p) for p in e["loc"]) or "body": e["msg"]
            for e in exc.errors(include_url=False)
        }
        raise ApiError(422, "invalid", "the request body is not valid", details) from exc


async def create_secret(request: web.Request) -> web.Response:
    body: SecretRequest = await _body(request, SecretRequest)
    secret, record = request.app[STORE].create_secret(
        ttl_s=body.ttl_s, uses=body.uses, note=body.note
    )
    log.info("secret.created", id=record.id, uses=record.uses_left, expires_at=record.expires_at)
    out = SecretCreated(
        id=record.id, secret=secret, expires_at=record.expires_at, uses_left=record.uses_left
    )
    return web.json_response(out.model_dump(), status=201)


async def list_secrets(request: web.Request) -> web.Response:
    items = [SecretInfo(**vars(s)).model_dump() for s in request.app[STORE].secrets()]
    return web.json_response(items)


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", healthz, "liveness: the process answers"),
    Route("GET", "/readyz", readyz, "readiness: the database answers"),
    Route("GET", "/api/v1/openapi.json", openapi, "this document"),
    Route(
        "POST",
        "/api/v1/enrollment-secrets",
        create_secret,
        "create an enrollment secret",
        admin=True,
        request=SecretRequest,
        response=SecretCreated,
    ),
    Route(
        "GET",
        "/api/v1/enrollment-secrets",
        list_secrets,
        "list enrollment secrets (never the secrets)",
        admin=True,
        response=SecretInfo,
        many=True,
    ),
)


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    error = {"$ref": "#/components/schemas/Error"}
    schemas: dict[str, Any] = {
        "Error": {
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
    }
    for r in ROUTES:
        op: dict[str, Any] = {"summary": r.summary, "responses": {"default": {"description": "error", "content": {
            "application/json": {"schema": error}}}}}  # fmt: skip
        ok_schema: dict[str, Any] = {"type": "object"}
        if r.response is not None:
            schemas[r.response.__name__] = r.response.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            ref = {"$ref": f"#/components/schemas/{r.response.__name__}"}
            ok_schema = {"type": "array", "items": ref} if r.many else ref
        status = "201" if r.method == "POST" else "200"
        op["responses"][status] = {
            "description": "success",
            "content": {"application/json": {"schema": ok_schema}},
        }
        if r.request is not None:
            schemas[r.request.__name__] = r.request.model_json_schema(
                ref_template="#/components/schemas/{model}"
            )
            op["requestBody"] = {"required": False, "content": {"application/json": {
                "schema": {"$ref": f"#/components/schemas/{r.request.__name__}"}}}}  # fmt: skip
        if r.admin:
            op["security"] = [{"admin": []}]
            op["responses"]["401"] = {"description": "missing or wrong credentials",
                                      "content": {"application/json": {"schema": error}}}  # fmt: skip
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "kedge cloud API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}},
        },
    }


@web.middleware
async def errors_and_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request ids in every log line and response; every error in the one JSON shape."""
    request_id = request.headers.get("X-Request-Id", "")
    if not request_id or len(request_id) > 64 or not request_id.replace("-", "").isalnum():
        request_id = secrets.token_hex(8)
    start = time.monotonic()
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            response = await handler(request)
        except ApiError as exc:
            response = exc.response(request_id)
        except web.HTTPException as exc:
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
            response = ApiError(exc.status, code, exc.reason).response(request_id)
        except Exception:
            log.exception("request.crashed", path=request.path)
            response = ApiError(500, "internal", "internal error; see the server log").response(
                request_id
            )
        response.headers["X-Request-Id"] = request_id
        log.info("request", method=request.method, path=request.path, status=response.status,
                 ms=round((time.monotonic() - start) * 1000, 1))  # fmt: skip
        return response


def _guarded(route: Route) -> Handler:
    if not route.admin:
        return route.handler

    async def admin_only(request: web.Request) -> web.StreamResponse:
        if not bearer_matches(request.headers.get("Authorization"), request.app[ADMIN_TOKEN]):
            raise UNAUTHORIZED
        return await route.handler(request)

    return admin_only


def create_app(store: Store, admin_token: str) -> web.Application:
    app = web.Application(middlewares=[errors_and_ids], client_max_size=1024 * 1024)
    app[STORE] = store
    app[ADMIN_TOKEN] = admin_token
    for r in ROUTES:
        app.router.add_route(r.method, r.path, _guarded(r))
    return app

"""The aiohttp application: the route table, the error/request-id middleware and admin
auth. Handlers live in cloud_api.views, one module per resource."""

from __future__ import annotations

import secrets
import time
from typing import Any

import structlog
from aiohttp import web

from cloud_api.auth import bearer_matches
from cloud_api.broker.admin import BrokerAdmin
from cloud_api.cloudcore import Cloudcore
from cloud_api.connections import Guard, Slots
from cloud_api.errors import UNAUTHORIZED, ApiError
from cloud_api.fleet.service import Fleet
from cloud_api.fleet.store import SqliteFleetStore
from cloud_api.jobs import Jobs
from cloud_api.routing import (
    ADMIN_TOKEN,
    BROKER_ADMIN,
    CLOUDCORE,
    ENROLL_THROTTLE,
    FLEET,
    GUARD,
    JOBS,
    SETTINGS,
    SLOTS,
    STORE,
    Handler,
    Route,
)
from cloud_api.routing import openapi_document as _openapi_document
from cloud_api.settings import CloudSettings
from cloud_api.store import Store
from cloud_api.throttle import Throttle
from cloud_api.views import boards, cloudcore, jobs, live, meta, metrics, nodes
from cloud_api.views import secrets as secret_views
from kedge.host import Host
from kedge.private_files import read_secret

log = structlog.get_logger(__name__)
ROUTES: tuple[Route, ...] = (
    *meta.ROUTES,
    *secret_views.ROUTES,
    *cloudcore.ROUTES,
    *jobs.ROUTES,
    *boards.ROUTES,
    *nodes.ROUTES,
    *metrics.ROUTES,
    *live.ROUTES,
)


def openapi_document() -> dict[str, Any]:
    return _openapi_document(ROUTES)


@web.middleware
async def errors_and_ids(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request ids in every log line and response; every error in the one JSON shape."""
    request_id = request.headers.get("X-Request-Id", "")
    if not request_id or len(request_id) > 64 or not request_id.replace("-", "").isalnum():
        request_id = secrets.token_hex(8)
    request["request_id"] = request_id
    start = time.monotonic()
    guard = request.app[GUARD]
    guard.request_started(request)
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            response = await handler(request)
        except ApiError as exc:
            response = exc.response(request_id)
        except web.HTTPException as exc:
            code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
                exc.status, "http_error"
            )
            response = ApiError(exc.status, code, exc.reason).response(request_id)
            if isinstance(exc, web.HTTPMethodNotAllowed):
                response.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        except Exception:
            log.exception("request.crashed", path=request.path)
            response = ApiError(500, "internal", "internal error; see the server log").response(
                request_id
            )
        finally:
            guard.request_finished(request)
        if not response.prepared:
            response.headers["X-Request-Id"] = request_id
        log.info(
            "request",
            method=request.method,
            path=request.path,
            status=response.status,
            ms=round((time.monotonic() - start) * 1000, 1),
        )
        return response


def _guarded(route: Route) -> Handler:
    if not route.admin:
        return route.handler

    async def admin_only(request: web.Request) -> web.StreamResponse:
        if not bearer_matches(request.headers.get("Authorization"), request.app[ADMIN_TOKEN]):
            raise UNAUTHORIZED
        return await route.handler(request)

    return admin_only


def broker_admin(settings: CloudSettings) -> BrokerAdmin | None:
    """The hand on boards' broker identities; its password is read now, so an unreadable
    file stops the start with its name rather than failing the first enrollment."""
    admin = settings.broker
    if admin.admin_password_file is None:
        return None
    password = read_secret(admin.admin_password_file, "broker.admin_password_file",
                           hint="kedge-cloud-api broker init writes it")  # fmt: skip
    return BrokerAdmin(settings.mqtt, admin.admin_username, password,
                       topic_prefix=settings.mqtt.topic_prefix,
                       discovery_prefix=admin.discovery_prefix)  # fmt: skip


def create_app(
    settings: CloudSettings,
    store: Store,
    admin_token: str,
    host: Host,
    fleet_store: SqliteFleetStore,
) -> web.Application:
    app = web.Application(middlewares=[errors_and_ids], client_max_size=1024 * 1024)
    app[SETTINGS], app[STORE], app[ADMIN_TOKEN] = settings, store, admin_token
    for job_id in store.interrupt_running_jobs():
        log.warning("job.interrupted", job_id=job_id, reason="the service stopped before it ended")
    app[JOBS] = Jobs(store.record_job)
    app[GUARD] = Guard(
        settings.max_connections, settings.header_timeout_s, settings.max_connections_per_address
    )
    app[SLOTS] = Slots(settings.long_requests_max, settings.long_requests_per_token)
    app[ENROLL_THROTTLE] = Throttle(settings.enroll_rate_per_s, settings.enroll_burst)
    app[CLOUDCORE] = Cloudcore(host, settings, store)
    app[FLEET] = Fleet(settings, fleet_store, app[CLOUDCORE].kubectl,
                       lambda node: (b.command_key if (b := store.board(node)) else None))  # fmt: skip
    app[BROKER_ADMIN] = broker_admin(settings)
    app[meta.OPENAPI] = openapi_document()
    for r in ROUTES:
        app.router.add_route(r.method, r.path, _guarded(r))

    async def start_fleet(app: web.Application) -> None:
        app[FLEET].start()

    async def stop_work(app: web.Application) -> None:
        await app[FLEET].stop()
        await app[JOBS].close()

    app.on_startup.append(start_fleet)
    app.on_shutdown.append(stop_work)
    return app

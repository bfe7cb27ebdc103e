"""Enrollment secrets (admin): created with an optional expiry and use count; only their
hashes are stored, so a secret is shown once."""

from __future__ import annotations

import structlog
from aiohttp import web

from cloud_api.errors import ApiError
from cloud_api.models import Revoked, SecretCreated, SecretInfo, SecretRequest
from cloud_api.routing import STORE, Route, read_body

log = structlog.get_logger(__name__)


async def create_secret(request: web.Request) -> web.Response:
    body: SecretRequest = await read_body(request, SecretRequest)
    secret, record = request.app[STORE].create_secret(
        ttl_s=body.ttl_s, uses=body.uses, note=body.note
    )
    log.info("secret.created", id=record.id, uses=record.uses_left, expires_at=record.expires_at)
    out = SecretCreated(
        id=record.id, secret=secret, expires_at=record.expires_at, uses_left=record.uses_left
    )
    return web.json_response(out.model_dump(), status=201)


async def list_secrets(request: web.Request) -> web.Response:
    return web.json_response(
        [SecretInfo(**vars(s)).model_dump() for s in request.app[STORE].secrets()]
    )


async def revoke_secret(request: web.Request) -> web.Response:
    secret_id = request.match_info["id"]
    if not request.app[STORE].revoke_secret(secret_id):
        raise ApiError(
            404, "not_found", f"no enrollment secret {secret_id!r} (kedge-cloud-api secret list)"
        )
    log.info("secret.revoked", id=secret_id)
    return web.json_response(Revoked(revoked=secret_id).model_dump())


ROUTES = (
    Route(
        "POST",
        "/api/v1/enrollment-secrets",
        create_secret,
        "create an enrollment secret",
        admin=True,
        request=SecretRequest,
        response=SecretCreated,
        status=201,
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
    Route(
        "DELETE",
        "/api/v1/enrollment-secrets/{id}",
        revoke_secret,
        "revoke an enrollment secret",
        admin=True,
        response=Revoked,
        also={404: ("no such secret", None)},
    ),
)

"""Enrollment secrets (admin): created with an optional expiry and use count; only their
hashes are stored, so a secret is shown once."""

from __future__ import annotations

import structlog
from aiohttp import web

from cloud_api.errors import ApiError
from cloud_api.jsonout import json_response
from cloud_api.models import Revoked, SecretCreated, SecretInfo, SecretRequest
from cloud_api.routing import STORE, Route, read_body
from cloud_api.store import Policy

log = structlog.get_logger(__name__)


async def create_secret(request: web.Request) -> web.Response:
    body: SecretRequest = await read_body(request, SecretRequest)
    policy = Policy(
        serials=tuple(body.serials) if body.serials is not None else None,
        name_pattern=body.name_pattern,
        approval=body.approval,
        reflash=body.reflash,
    )
    secret, record = request.app[STORE].create_secret(
        ttl_s=body.ttl_s, uses=body.uses, note=body.note, policy=policy
    )
    log.info("secret.created", id=record.id, uses=record.uses_left, expires_at=record.expires_at)
    out = SecretCreated(
        id=record.id, secret=secret, expires_at=record.expires_at, uses_left=record.uses_left
    )
    return json_response(out.model_dump(), status=201)


async def list_secrets(request: web.Request) -> web.Response:
    """Each secret with its policy, the boards it enrolled and those waiting with it: a
    batch's progress at a glance."""
    store = request.app[STORE]
    enrolled: dict[str | None, list[str]] = {}
    for b in store.boards():
        enrolled.setdefault(b.secret_id, []).append(b.node_name)
    waiting: dict[str, list[str]] = {}
    for w in store.pendings():
        if w.approved_at is None:
            waiting.setdefault(w.secret_id, []).append(w.node_name)
    return json_response(
        [
            SecretInfo(
                id=s.id, created=s.created, expires_at=s.expires_at, uses_left=s.uses_left,
                note=s.note, serials=list(s.policy.serials) if s.policy.serials is not None else None,
                name_pattern=s.policy.name_pattern, approval=s.policy.approval,
                reflash=s.policy.reflash, boards=enrolled.get(s.id, []), pending=waiting.get(s.id, []),
            ).model_dump()
            for s in store.secrets()
        ]
    )  # fmt: skip


async def revoke_secret(request: web.Request) -> web.Response:
    secret_id = request.match_info["id"]
    if not request.app[STORE].revoke_secret(secret_id):
        raise ApiError(
            404, "not_found", f"no enrollment secret {secret_id!r} (kedge-cloud-api secret list)"
        )
    log.info("secret.revoked", id=secret_id)
    return json_response(Revoked(revoked=secret_id).model_dump())


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

"""Boards: enrollment with a secret (no admin token: the secret is the credential) and
the list of enrolled boards (admin)."""

from __future__ import annotations

import asyncio
import fnmatch
import time
from dataclasses import replace
from typing import Literal

import structlog
from aiohttp import web
from pydantic import SecretStr

from cloud_api.broker import identities
from cloud_api.broker.admin import BrokerAdminError
from cloud_api.errors import UNAUTHORIZED, ApiError
from cloud_api.jsonout import json_response
from cloud_api.kube import KubeError
from cloud_api.models import BoardInfo, NodeForgotten, PendingInfo
from cloud_api.routing import (
    BROKER_ADMIN,
    CLOUDCORE,
    ENROLL_THROTTLE,
    FLEET,
    SETTINGS,
    STORE,
    Handler,
    Route,
    read_body,
)
from cloud_api.store import (
    Board,
    CloudcoreRecord,
    PendingBoard,
    PendingFull,
    Policy,
    SecretRefused,
)
from cloud_api.throttle import Throttle
from cloud_api.views.cloudcore import kube_unavailable
from kedge import command_auth
from kedge.errors import ConfigError
from kedge.kubeedge import CERT_PORT, CLOUDHUB_PORT
from kedge.names import is_dns1123_subdomain
from kedge.wire import BrokerAnswer, Enrolled, EnrollPending, EnrollRequest, RenewRequest

log = structlog.get_logger(__name__)
PENDING_RETRY_S = 30  # how soon a parked board asks again


async def _mqtt(request: web.Request, node: str) -> BrokerAnswer | None:
    """Where the board reports, as whom: its own identity, made (or replaced, which ends
    the old password and its connection) now; else the one shared account."""
    mqtt, admin = request.app[SETTINGS].board_mqtt, request.app[BROKER_ADMIN]
    if mqtt.host is None:
        return None
    try:
        ca_pem = mqtt.ca_file.read_text() if mqtt.tls and mqtt.ca_file is not None else None
        if admin is None:
            username, password = mqtt.username, mqtt.read_password()
        else:
            username = identities.board_username(node)
            password = SecretStr(await admin.put_board(node))
    except (ConfigError, OSError) as exc:
        raise ApiError(
            503, "mqtt_unavailable", f"no broker credentials for {node!r}: {exc}"
        ) from exc
    except BrokerAdminError as exc:
        raise ApiError(
            503, "broker_unavailable", f"no broker identity for {node!r}: {exc}"
        ) from exc
    return BrokerAnswer(host=mqtt.host, port=mqtt.port, tls=mqtt.tls, username=username,
                        password=password, ca_pem=ca_pem)  # fmt: skip


def _refused(exc: SecretRefused) -> ApiError:
    if exc.reason == "unknown":
        return UNAUTHORIZED
    return ApiError(
        403,
        "secret_" + exc.reason.replace(" ", "_"),
        f"this enrollment secret is {exc.reason}: ask the cluster admin for a new one "
        "(kedge-cloud-api secret create)",
    )


def _throttle(request: web.Request) -> None:
    wait = request.app[ENROLL_THROTTLE].take(request.remote or "?")
    if wait > 0:
        after = Throttle.retry_after(wait)
        raise ApiError(
            429,
            "too_many_requests",
            "too many enrollment attempts from this address: wait and try again",
            {"retry_after_s": after},
            headers={"Retry-After": after},
        )


async def enroll(request: web.Request) -> web.Response:
    _throttle(request)
    body: EnrollRequest = await read_body(request, EnrollRequest)
    store = request.app[STORE]
    try:
        secret = store.usable_secret(body.secret.get_secret_value())
    except SecretRefused as exc:
        raise _refused(exc) from None
    pattern = secret.policy.name_pattern
    if pattern is not None and not fnmatch.fnmatchcase(body.node_name, pattern):
        raise ApiError(
            403,
            "name_not_allowed",
            f"node name {body.node_name!r} does not match {pattern!r}, the names this enrollment "
            "secret may enroll: fix the seed's node_name, or use a secret made for this name",
            {"node_name": body.node_name, "name_pattern": pattern},
        )
    known = store.board(body.node_name)
    reflashed = _claim(body, known)
    wait = _waits_for_approval(secret.policy, body, reflashed)
    if wait is not None:
        pending = _park(request, body, secret.id, secret.uses_left, wait)
        if pending is not None:
            return json_response(text=pending.to_json(), status=202)
    try:
        secret_id = store.spend_use(body.secret.get_secret_value())
    except SecretRefused as exc:
        raise _refused(exc) from None
    try:
        answer = await _enroll(request, body, secret_id, known)
    except BaseException:
        store.give_back_use(secret_id)
        raise
    store.unpark(body.node_name)
    # A board taken out earlier is back: its reports count again.
    await asyncio.to_thread(request.app[FLEET].store.enrolled, body.node_name)
    return json_response(text=answer.to_json())


Recognised = Literal["serial", "mac"]


def _same_hardware(known: Board, body: EnrollRequest) -> Recognised | None:
    """The board that enrolled under this name, flashed again: by its serial, or with no
    serial on either side by one of its MACs. Both are sent in clear — recognition, not
    proof: the request also holds a valid enrollment secret, and policy decides. A MAC is
    the weaker: the board sends it in every Ethernet frame, so anyone on its network has
    it, and it never re-issues credentials alone (_waits_for_approval)."""
    if known.serial is not None or body.serial is not None:
        return "serial" if known.serial == body.serial else None
    return "mac" if set(known.macs) & set(body.macs) else None


def _claim(body: EnrollRequest, known: Board | None) -> Recognised | None:
    """May this request have the name? How the named board re-flashed (its key gone with
    the old image) was recognised; None for a new name or the board itself; ApiError 409
    for another board's name."""
    if known is None:
        return None
    if known.command_key is not None:
        # The name belongs to the board holding its key: a machine-id hash, sent in
        # clear, is no proof (docs/security.md).
        why = command_auth.proof_refusal(
            body.node_name, body.proof_at, body.proof, known.command_key, time.time()
        )
        if why is None:
            return None
        if body.proof is None and (recognised := _same_hardware(known, body)):
            return recognised
        log.warning("board.enroll_refused", node_name=body.node_name, reason=why)
        raise ApiError(
            409,
            "name_taken",
            f"node name {body.node_name!r} belongs to the board holding its key, and this "
            f"request does not prove it is that board ({why}): enroll again from that board "
            "(with its clock right), or release the name first: "
            f"DELETE /api/v1/nodes/{body.node_name}",
            {"node_name": body.node_name},
        )
    if known.machine_id is None or known.machine_id != body.machine_id:
        if recognised := _same_hardware(known, body):
            return recognised
        raise _taken(body.node_name)
    return None


def _taken(node: str) -> ApiError:
    return ApiError(
        409,
        "name_taken",
        f"node name {node!r} is already used by another board: pick another (--node-name), "
        f"or remove the old node (kubectl delete node {node}) if that board is gone",
        {"node_name": node},
    )


def _waits_for_approval(
    policy: Policy, body: EnrollRequest, reflashed: Recognised | None
) -> str | None:
    if policy.serials is not None and body.serial not in policy.serials:
        return (
            f"serial {body.serial} is not on this secret's allowlist"
            if body.serial
            else "the board has no serial to match this secret's allowlist"
        )
    if policy.approval == "pending":
        return "this secret enrolls a board only once the admin approves it"
    if reflashed == "mac":
        return (
            "a re-flashed board known only by a MAC address, which anyone on its network can "
            "copy: the admin decides"
        )
    if reflashed and policy.reflash == "pending":
        return "a re-flashed board: the same hardware as the enrolled one, without its key"
    return None


def _park(
    request: web.Request, body: EnrollRequest, secret_id: str, uses_left: int | None, reason: str
) -> EnrollPending | None:
    """The board parked (or still parked): the answer it waits with. None once approved."""
    now, settings, store = time.time(), request.app[SETTINGS], request.app[STORE]
    try:
        parked = store.park(
            PendingBoard(
                body.node_name,
                secret_id,
                body.serial,
                tuple(body.macs),
                body.machine_id,
                body.arch,
                reason,
                now,
                now,
                None,
            ),
            per_secret=settings.pending_per_secret,
            ttl_s=settings.pending_days * 86400,
            secret_uses_left=uses_left,
        )
    except PendingFull as exc:
        raise ApiError(
            503,
            "too_many_pending",
            f"{exc}: approve or refuse waiting boards (kedge-cloud-api boards pending), "
            "or wait for the ones not heard from to expire",
        ) from None
    if parked.refused_at is not None:
        log.info("board.refused_asked_again", node_name=body.node_name)
        raise ApiError(
            403,
            "refused",
            f"the cluster admin refused {body.node_name!r}: ask the admin, who can approve it "
            f"(kedge-cloud-api boards approve {body.node_name})",
            {"node_name": body.node_name},
        )
    if parked.approved_at is not None:
        return None
    log.info("board.pending", node_name=body.node_name, serial=body.serial, reason=reason)
    return EnrollPending(
        node_name=body.node_name,
        reason=f"{reason}: the cluster admin approves it with "
        f"kedge-cloud-api boards approve {body.node_name}",
        retry_after_s=PENDING_RETRY_S,
    )


async def _enroll(
    request: web.Request, body: EnrollRequest, secret_id: str, known: Board | None
) -> Enrolled:
    """The slow part, once a use of the secret is held."""
    store, cloudcore = request.app[STORE], request.app[CLOUDCORE]
    record = store.cloudcore()
    if record is None:
        raise ApiError(
            409,
            "no_cloudcore",
            "cloudcore is not installed through this API yet: "
            "run kedge-cloud-api init --advertise-address ... on the master first",
        )
    try:
        in_cluster = any(n.name == body.node_name for n in await cloudcore.kubectl.nodes())
        if known is None and in_cluster:
            raise _taken(body.node_name)
        token, expires = await cloudcore.token()
    except KubeError as exc:
        raise kube_unavailable(exc) from exc
    mqtt = await _mqtt(request, body.node_name)
    key = command_auth.new_key()  # a new one at every enrollment: the old one stops working
    now = time.time()
    store.record_board(
        Board(
            body.node_name,
            body.arch,
            body.agent_version,
            now,
            secret_id,
            body.machine_id,
            key,
            body.serial,
            tuple(body.macs),
            known.enrollments + 1 if known else 1,
            (known.first_enrolled or known.enrolled_at) if known else now,
        )
    )
    log.info(
        "board.enrolled",
        node_name=body.node_name,
        arch=body.arch,
        agent_version=body.agent_version,
        again=known is not None,
        serial=body.serial,
    )
    return _answer(body.node_name, record, token, expires, mqtt, key)


def _answer(
    node: str,
    record: CloudcoreRecord,
    token: str,
    expires: float | None,
    mqtt: BrokerAnswer | None,
    key: str,
) -> Enrolled:
    return Enrolled(
        node_name=node,
        cloudcore=f"{record.advertise[0]}:{CLOUDHUB_PORT}",
        cloudcore_cert_port=CERT_PORT,
        token=SecretStr(token),
        token_expires_at=expires,
        kubeedge_version=record.version,
        mqtt=mqtt,
        command_key=SecretStr(key),
    )


async def renew(request: web.Request) -> web.Response:
    """Fresh credentials for an enrolled board, on the proof of its current key: a join
    token current now and a new command key (the old one stops working)."""
    _throttle(request)
    body: RenewRequest = await read_body(request, RenewRequest)
    store, cloudcore = request.app[STORE], request.app[CLOUDCORE]
    known = store.board(body.node_name)
    why = (
        "this name is not enrolled here with a key: enroll it with a secret"
        if known is None or known.command_key is None
        else command_auth.proof_refusal(
            body.node_name, body.proof_at, body.proof, known.command_key, time.time()
        )
    )
    if known is None or why is not None:
        log.warning("board.renew_refused", node_name=body.node_name, reason=why)
        raise ApiError(401, "not_proven", f"renewal of {body.node_name!r} refused: {why}")
    record = store.cloudcore()
    if record is None:
        raise ApiError(409, "no_cloudcore", "cloudcore is not installed through this API")
    try:
        token, expires = await cloudcore.token()
    except KubeError as exc:
        raise kube_unavailable(exc) from exc
    key = command_auth.new_key()
    store.record_board(replace(known, agent_version=body.agent_version, command_key=key))
    log.info("board.renewed", node_name=body.node_name)
    answer = _answer(
        body.node_name, record, token, expires, await _mqtt(request, body.node_name), key
    )
    return json_response(text=answer.to_json())


async def forget_node(request: web.Request) -> web.Response:
    """An enrolled board's own Node deleted, on the proof of its key: KubeEdge from v1.20
    refuses to join a name the cluster still has ("node already exists"), and a board that
    was reset and joins again is that name coming back. Only the key holder can ask."""
    _throttle(request)
    body: RenewRequest = await read_body(request, RenewRequest)
    known = request.app[STORE].board(body.node_name)
    why = (
        "this name is not enrolled here with a key"
        if known is None or known.command_key is None
        else command_auth.proof_refusal(
            body.node_name,
            body.proof_at,
            body.proof,
            known.command_key,
            time.time(),
            command_auth.FORGET_NODE_DOMAIN,
        )
    )
    if why is None and body.proof is not None:
        # Deleting a Node is done once per proof: a captured request sent again within
        # the proof's window must not delete the Node of a board that has joined since.
        keep = 2 * command_auth.PROOF_WINDOW_S
        if not request.app[STORE].spend_proof(body.proof, keep):
            why = "this proof was already used: make a new one (kedge-agent does, each time)"
    if why is not None:
        log.warning("board.forget_node_refused", node_name=body.node_name, reason=why)
        raise ApiError(401, "not_proven", f"deleting Node {body.node_name!r} refused: {why}")
    try:
        deleted = await request.app[CLOUDCORE].kubectl.delete_node(body.node_name)
    except KubeError as exc:
        raise kube_unavailable(exc) from exc
    log.info("board.node_forgotten", node_name=body.node_name, deleted=deleted)
    return json_response(text=NodeForgotten(node=body.node_name, deleted=deleted).model_dump_json())


async def list_boards(request: web.Request) -> web.Response:
    try:
        nodes = {n.name for n in await request.app[CLOUDCORE].kubectl.nodes()}
    except KubeError as exc:
        raise kube_unavailable(exc) from exc
    return json_response(
        [
            BoardInfo(
                node_name=b.node_name,
                arch=b.arch,
                agent_version=b.agent_version,
                enrolled_at=b.enrolled_at,
                joined=b.node_name in nodes,
                serial=b.serial,
                enrollments=b.enrollments,
                first_enrolled=b.first_enrolled,
            ).model_dump()
            for b in request.app[STORE].boards()
        ]
    )


def _pending_info(p: PendingBoard) -> dict[str, object]:
    return PendingInfo(
        node_name=p.node_name, serial=p.serial, macs=list(p.macs), arch=p.arch, reason=p.reason,
        secret_id=p.secret_id, requested_at=p.requested_at, last_seen=p.last_seen,
        approved=p.approved_at is not None, refused=p.refused_at is not None,
    ).model_dump()  # fmt: skip


async def list_pending(request: web.Request) -> web.Response:
    days = request.app[SETTINGS].pending_days
    return json_response([_pending_info(p) for p in request.app[STORE].pendings(days * 86400)])


def _decide(verdict: Literal["approve", "refuse"]) -> Handler:
    """The admin's yes or no on a waiting board (Store.approve / Store.refuse)."""

    async def decide(request: web.Request) -> web.Response:
        name, store = request.match_info["name"], request.app[STORE]
        act = store.approve if verdict == "approve" else store.refuse
        decided = act(name) if is_dns1123_subdomain(name) else None
        if decided is None:
            raise ApiError(
                404,
                "not_pending",
                f"no board {name!r} waits for approval (kedge-cloud-api boards pending lists them)",
            )
        log.info(f"board.{verdict}d", node_name=name, serial=decided.serial)
        return json_response(_pending_info(decided))

    return decide


approve, refuse = _decide("approve"), _decide("refuse")


# What can stop either route from answering with credentials
ANSWERING = {
    429: ("too many attempts from this address (Retry-After)", None),
    502: ("the cluster did not answer", None),
    503: (
        "no broker credentials: the shared password is unreadable, or the broker did not make the board's identity",
        None,
    ),
}
ROUTES = (
    Route(
        "POST",
        "/api/v1/enroll",
        enroll,
        "enroll a board: its join parameters, for an enrollment secret",
        request=EnrollRequest,
        response=Enrolled,
        also={
            202: ("parked until the admin approves the board (boards approve NAME)", EnrollPending),
            401: ("unknown secret", None),
            403: ("the secret is expired or used up, or the name is not one it may enroll", None),
            409: ("the node name is taken, or cloudcore is not installed", None),
            **ANSWERING,
        },
    ),
    Route(
        "POST",
        "/api/v1/renew",
        renew,
        "fresh credentials for an enrolled board, on the proof of its command key (no secret)",
        request=RenewRequest,
        response=Enrolled,
        also={
            401: ("not enrolled here, or the proof failed (the message says which)", None),
            409: ("cloudcore is not installed", None),
            **ANSWERING,
        },
    ),
    Route(
        "POST",
        "/api/v1/forget-node",
        forget_node,
        "an enrolled board's own Node deleted before it joins again (KubeEdge v1.20 on refuses a "
        "name the cluster still has), on the proof of its command key",
        request=RenewRequest,
        response=NodeForgotten,
        also={
            401: ("not enrolled here, or the proof failed (the message says which)", None),
            **ANSWERING,
        },
    ),
    Route(
        "GET",
        "/api/v1/boards",
        list_boards,
        "enrolled boards and whether they joined",
        admin=True,
        response=BoardInfo,
        many=True,
        also={502: ("the cluster did not answer", None)},
    ),
    Route(
        "GET",
        "/api/v1/boards/pending",
        list_pending,
        "boards waiting for the admin's approval to enroll",
        admin=True,
        response=PendingInfo,
        many=True,
    ),
    Route(
        "POST",
        "/api/v1/boards/{name}/approve",
        approve,
        "approve a waiting board: it enrolls the next time it asks",
        admin=True,
        response=PendingInfo,
        also={404: ("no such board waits", None)},
    ),
    Route(
        "POST",
        "/api/v1/boards/{name}/refuse",
        refuse,
        "refuse a waiting board: asking again, it is told so (until its entry expires)",
        admin=True,
        response=PendingInfo,
        also={404: ("no such board waits", None)},
    ),
)

"""Boards: enrollment with a secret (no admin token: the secret is the credential) and
the list of enrolled boards (admin)."""

from __future__ import annotations

import time
from dataclasses import replace

import structlog
from aiohttp import web
from pydantic import SecretStr

from cloud_api.broker import identities
from cloud_api.broker.admin import BrokerAdminError
from cloud_api.errors import UNAUTHORIZED, ApiError
from cloud_api.kube import KubeError
from cloud_api.models import BoardInfo, NodeForgotten
from cloud_api.routing import (
    BROKER_ADMIN,
    CLOUDCORE,
    ENROLL_THROTTLE,
    SETTINGS,
    STORE,
    Route,
    read_body,
)
from cloud_api.store import Board, CloudcoreRecord, SecretRefused
from cloud_api.throttle import Throttle
from cloud_api.views.cloudcore import kube_unavailable
from kedge import command_auth
from kedge.errors import ConfigError
from kedge.kubeedge import CERT_PORT, CLOUDHUB_PORT
from kedge.wire import BrokerAnswer, Enrolled, EnrollRequest, RenewRequest

log = structlog.get_logger(__name__)


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
        secret_id = store.spend_use(body.secret.get_secret_value())
    except SecretRefused as exc:
        raise _refused(exc) from None
    try:
        answer = await _enroll(request, body, secret_id)
    except BaseException:
        store.give_back_use(secret_id)
        raise
    return web.json_response(text=answer.to_json())


async def _enroll(request: web.Request, body: EnrollRequest, secret_id: str) -> Enrolled:
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
    taken = ApiError(
        409,
        "name_taken",
        f"node name {body.node_name!r} is already used by another board: pick "
        "another (--node-name), or remove the old node (kubectl delete node "
        f"{body.node_name}) if that board is gone",
        {"node_name": body.node_name},
    )
    known = store.board(body.node_name)
    if known is not None and known.command_key is not None:
        # The name belongs to the board holding its key: a machine-id hash, sent in
        # clear, is no proof (docs/security.md).
        why = command_auth.proof_refusal(
            body.node_name, body.proof_at, body.proof, known.command_key, time.time()
        )
        if why is not None:
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
    elif known is not None and (known.machine_id is None or known.machine_id != body.machine_id):
        raise taken
    try:
        in_cluster = any(n.name == body.node_name for n in await cloudcore.kubectl.nodes())
        if known is None and in_cluster:
            raise taken
        token, expires = await cloudcore.token()
    except KubeError as exc:
        raise kube_unavailable(exc) from exc
    mqtt = await _mqtt(request, body.node_name)
    key = command_auth.new_key()  # a new one at every enrollment: the old one stops working
    store.record_board(
        Board(body.node_name, body.arch, body.agent_version, time.time(), secret_id,
              body.machine_id, key)
    )  # fmt: skip
    log.info(
        "board.enrolled",
        node_name=body.node_name,
        arch=body.arch,
        agent_version=body.agent_version,
        again=known is not None,
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
    return web.json_response(text=answer.to_json())


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
    if why is not None:
        log.warning("board.forget_node_refused", node_name=body.node_name, reason=why)
        raise ApiError(401, "not_proven", f"deleting Node {body.node_name!r} refused: {why}")
    try:
        deleted = await request.app[CLOUDCORE].kubectl.delete_node(body.node_name)
    except KubeError as exc:
        raise kube_unavailable(exc) from exc
    log.info("board.node_forgotten", node_name=body.node_name, deleted=deleted)
    return web.json_response(
        text=NodeForgotten(node=body.node_name, deleted=deleted).model_dump_json()
    )


async def list_boards(request: web.Request) -> web.Response:
    try:
        nodes = {n.name for n in await request.app[CLOUDCORE].kubectl.nodes()}
    except KubeError as exc:
        raise kube_unavailable(exc) from exc
    return web.json_response(
        [
            BoardInfo(
                node_name=b.node_name,
                arch=b.arch,
                agent_version=b.agent_version,
                enrolled_at=b.enrolled_at,
                joined=b.node_name in nodes,
            ).model_dump()
            for b in request.app[STORE].boards()
        ]
    )


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
            401: ("unknown secret", None),
            403: ("the secret is expired or used up", None),
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
)

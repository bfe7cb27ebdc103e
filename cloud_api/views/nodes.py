"""The fleet: every board's state, one board in full, its health over time, and the
commands sent to it."""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from aiohttp import web

from cloud_api.broker.admin import BrokerAdminError
from cloud_api.errors import ApiError
from cloud_api.fleet.service import NoBroker, NotEnrolled
from cloud_api.fleet.view import downsample, page, wire
from cloud_api.jobs import Busy
from cloud_api.jsonout import json_response, to_json
from cloud_api.kube import KubeError
from cloud_api.models import (
    Accepted,
    CommandRequest,
    CommandView,
    HealthSeries,
    JobView,
    NodeDetail,
    NodePage,
    PodView,
    Removed,
    VerifyRequest,
    VerifyRun,
)
from cloud_api.routing import (
    BROKER_ADMIN,
    FLEET,
    JOBS,
    SETTINGS,
    SLOTS,
    STORE,
    Route,
    busy,
    read_body,
)
from kedge.names import DNS1123_SUBDOMAIN_RE, is_dns1123_subdomain
from kedge.wire.commands import COMMAND_ID_PATTERN

log = structlog.get_logger(__name__)

MAX_PAGE = 10000
MAX_WAIT_S = 60.0
MAX_POINTS = 5000


def _number(request: web.Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ApiError(400, "bad_query", f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:  # also refuses nan
        raise ApiError(400, "bad_query", f"{name}={raw!r} is outside {low:g}..{high:g}")
    return value


def _integer(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is not None and not (raw.isascii() and raw.isdigit()):
        raise ApiError(400, "bad_query", f"{name}={raw!r} is not a whole number")
    return int(_number(request, name, default, low, high))


def _node_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not is_dns1123_subdomain(name):
        raise ApiError(400, "bad_name", f"{name!r} is not a node name (a DNS-1123 subdomain)")
    return name


async def list_nodes(request: web.Request) -> web.Response:
    fleet = request.app[FLEET]
    state = request.query.get("status")
    if state is not None and state not in ("online", "stale", "offline", "unknown"):
        raise ApiError(
            400, "bad_query", f"status={state!r}: expected online, stale, offline or unknown"
        )
    failing = request.query.get("failing")
    limit = _integer(request, "limit", 500, 1, MAX_PAGE)
    offset = _integer(request, "offset", 0, 0, 10**9)
    refresh = request.query.get("refresh", "false")
    if refresh not in ("true", "false"):
        raise ApiError(400, "bad_query", f"refresh={refresh!r}: expected true or false")
    if refresh == "true":
        with contextlib.suppress(KubeError):  # the last view stays; /metrics and the log say why
            await fleet.poll_kube()
    stale = request.app[SETTINGS].fleet.stale_after_s
    now = time.time()
    total, raw = await asyncio.to_thread(
        fleet.store.raw_page, offset, limit, state=state, failing=failing, stale_before=now - stale
    )
    items = page(raw, now=now, stale_after_s=stale)
    body = {"total": total, "offset": offset, "limit": limit, "items": items}  # a NodePage
    return json_response(body=to_json(body))


async def get_node(request: web.Request) -> web.Response:
    fleet, name = request.app[FLEET], _node_name(request)
    found = fleet.store.node(name)
    if found is None:
        raise ApiError(
            404,
            "not_found",
            f"no board {name!r} has reported, and Kubernetes has no such edge node",
        )
    row, full = found
    base = wire(row, time.time(), request.app[SETTINGS].fleet.stale_after_s)
    history = [
        {"at": t, "ok": ok, "failing": failing}
        for t, ok, failing in fleet.store.check_history(name, 20)
    ]
    detail = NodeDetail(
        **base, health=full["health"], check_report=full["checks"],
        check_history=history, commands=[CommandView(**c) for c in fleet.store.commands(name, 20)],
        pods=[PodView(**p) for p in row.pods or []],
    )  # fmt: skip
    return json_response(text=detail.model_dump_json())


async def node_health(request: web.Request) -> web.Response:
    fleet, name = request.app[FLEET], _node_name(request)
    now = time.time()
    until = _number(request, "until", now, 0, 4e9)
    since = _number(request, "since", until - 3600, 0, 4e9)
    step = _number(request, "step", 0, 0, 86400 * 30)
    if step == 0 and (until - since) > 6 * 3600:
        step = (until - since) / 360  # a day or more: a point every few minutes, not every report
    points = downsample(await asyncio.to_thread(fleet.store.health, name, since, until), step)
    if len(points) > MAX_POINTS:
        raise ApiError(400, "too_many_points", f"{len(points)} points: pass a larger step")
    return json_response(text=HealthSeries(node=name, step=step, points=points).model_dump_json())


async def send_command(request: web.Request) -> web.Response:
    fleet, name = request.app[FLEET], _node_name(request)
    body: CommandRequest = await read_body(request, CommandRequest)
    args = dict(body.args)
    if body.action == "upgrade":
        # The board upgrades only up to the release cloudcore runs: this API says which,
        # whatever the sender wrote (the command is sealed with the board's key).
        record = request.app[STORE].cloudcore()
        if record is None:
            raise ApiError(
                409, "no_cloudcore", "cloudcore is not installed by this API: run init first"
            )
        args["cloud_version"] = record.version
    try:
        sent = await fleet.send(name, body.action, args, body.ttl_s)
    except NoBroker as exc:
        raise ApiError(503 if exc.configured else 409, "no_broker", str(exc)) from exc
    except NotEnrolled as exc:
        raise ApiError(409, "not_enrolled", str(exc)) from exc
    return json_response(text=CommandView(**sent).model_dump_json(), status=202)


async def remove_node(request: web.Request) -> web.Response:
    fleet, name = request.app[FLEET], _node_name(request)
    reset = request.query.get("reset", "false")
    if reset not in ("true", "false"):
        raise ApiError(400, "bad_query", f"reset={reset!r}: expected true or false")
    wait = _number(request, "wait", 30, 0, MAX_WAIT_S)
    slots = request.app[SLOTS]
    try:
        with slots.take(slots.key(request)) as had:
            done = await fleet.remove(name, reset_first=reset == "true", wait_s=wait if had else 0)
    except NoBroker as exc:
        raise ApiError(
            503 if exc.configured else 409, "no_broker", f"reset not sent: {exc}"
        ) from exc
    except NotEnrolled as exc:
        raise ApiError(409, "not_enrolled", f"reset not sent: {exc}") from exc
    except KubeError as exc:
        raise ApiError(
            503, "kubernetes_unavailable", f"cannot delete node {name!r}: {exc}"
        ) from exc
    done["enrollment_revoked"] = request.app[STORE].forget_board(name)
    admin = request.app[BROKER_ADMIN]
    if admin is not None:
        try:
            await admin.remove_board(name)
            done["broker_identity_removed"] = True
        except BrokerAdminError as exc:
            log.warning("board.broker_identity_kept", node=name, error=str(exc))
            done |= {
                "broker_identity_removed": False,
                "broker_error": f"{exc} (run the removal again)",
            }
    return json_response(text=Removed(**done).model_dump_json())


async def start_verify(request: web.Request) -> web.Response:
    body: VerifyRequest = await read_body(request, VerifyRequest)
    fleet = request.app[FLEET]
    try:
        job = request.app[JOBS].start(
            "verify", lambda j: fleet.verify(j, body.image, body.timeout_s)
        )
    except Busy as exc:
        raise busy(exc) from exc
    accepted = Accepted(message=f"running {body.image} on every Ready edge node", changed=True,
                        job=JobView.model_validate(job.view()))  # fmt: skip
    return json_response(text=accepted.model_dump_json(), status=202)


async def last_verify(request: web.Request) -> web.Response:
    found = request.app[FLEET].store.last_verify()
    if found is None:
        raise ApiError(404, "not_found", "no verify job has finished yet: POST /api/v1/verify")
    return json_response(text=VerifyRun(**found).model_dump_json())


async def get_command(request: web.Request) -> web.Response:
    fleet, name = request.app[FLEET], _node_name(request)
    wait = _number(request, "wait", 0, 0, MAX_WAIT_S)
    slots = request.app[SLOTS]
    with slots.take(slots.key(request)) as had:
        # Past the bound on open waits the answer comes at once, as it stands.
        found = await fleet.result(name, request.match_info["id"], wait if had else 0)
    if found is None:
        raise ApiError(404, "not_found", f"no command {request.match_info['id']!r} for {name!r}")
    return json_response(text=CommandView(**found).model_dump_json())


NOT_A_NAME = {400: ("the name is not a node name", None)}
NODE = {
    "name": {"type": "string", "pattern": f"^{DNS1123_SUBDOMAIN_RE.pattern}$", "maxLength": 253}
}
COMMAND_ID = {"id": {"type": "string", "pattern": COMMAND_ID_PATTERN}}
EPOCH = {"type": "number", "minimum": 0, "maximum": 4e9}
ROUTES = (
    Route("GET", "/api/v1/nodes", list_nodes, "every known board: state, readiness, checks, resources",
          admin=True, response=NodePage, also={400: ("a bad filter or page", None)},
          query={"status": ("online, stale, offline or unknown",
                            {"type": "string", "enum": ["online", "stale", "offline", "unknown"]}),
                 "failing": ("boards failing this check", {"type": "string"}),
                 "limit": ("page size (500)", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}),
                 "offset": ("first item", {"type": "integer", "minimum": 0, "maximum": 10**9}),
                 "refresh": ("read Kubernetes' view first instead of the last poll's",
                             {"type": "string", "enum": ["true", "false"]})}),
    Route("GET", "/api/v1/nodes/{name}", get_node, "one board in full: latest reports, check history, commands",
          admin=True, response=NodeDetail, also={**NOT_A_NAME, 404: ("no such board", None)}, params=NODE),
    Route("GET", "/api/v1/nodes/{name}/health", node_health, "a board's CPU, memory, disk and temperature over time",
          admin=True, response=HealthSeries, also={400: ("a bad name or range", None)}, params=NODE,
          query={"since": ("epoch seconds (an hour before until)", EPOCH), "until": ("epoch seconds (now)", EPOCH),
                 "step": ("seconds per point (0: every report)",
                          {"type": "number", "minimum": 0, "maximum": 86400 * 30})}),
    Route("POST", "/api/v1/nodes/{name}/commands", send_command, "send a command to a board (its allow_remote decides)",
          admin=True, request=CommandRequest, response=CommandView, status=202, params=NODE,
          also={**NOT_A_NAME, 409: ("no broker is configured, or the board did not enroll here", None),
                503: ("no broker link", None)}),
    Route("GET", "/api/v1/nodes/{name}/commands/{id}", get_command, "a command and the board's answer",
          admin=True, response=CommandView, also={**NOT_A_NAME, 404: ("no such command", None)},
          params={**NODE, **COMMAND_ID},
          query={"wait": ("seconds to wait for the answer", {"type": "number", "minimum": 0, "maximum": MAX_WAIT_S})}),
    Route("DELETE", "/api/v1/nodes/{name}", remove_node,
          "take a board out: optionally reset it first, delete its Kubernetes node, forget it",
          admin=True, response=Removed, params=NODE,
          also={**NOT_A_NAME, 409: ("reset asked, no broker configured or the board did not enroll here", None),
                503: ("reset asked, no broker link", None)},
          query={"reset": ("send the board a reset first", {"type": "string", "enum": ["true", "false"]}),
                 "wait": ("seconds to wait for the reset's answer (30)",
                          {"type": "number", "minimum": 0, "maximum": MAX_WAIT_S})}),
    Route("POST", "/api/v1/verify", start_verify, "a pod on every Ready edge node, reported per board (a job)",
          admin=True, request=VerifyRequest, response=Accepted, status=202,
          also={409: ("another job is running", None)}),
    Route("GET", "/api/v1/verify", last_verify, "the newest verify job's result, per board",
          admin=True, response=VerifyRun, also={404: ("no verify job has finished", None)}),
)  # fmt: skip

"""Cloudcore on this master (admin): install or upgrade, status, reset, join token.
Refusals that need no keadm run are answered at once; the rest is a background job."""

from __future__ import annotations

from dataclasses import asdict

import structlog
from aiohttp import web

from cloud_api.cloudcore_plan import PlanError
from cloud_api.errors import ApiError
from cloud_api.jobs import Busy, Job
from cloud_api.jsonout import json_response
from cloud_api.kube import KubeError
from cloud_api.models import Accepted, CloudcoreRequest, CloudcoreStatus, JobView, TokenView
from cloud_api.routing import CLOUDCORE, JOBS, Route, busy, read_body

log = structlog.get_logger(__name__)


def kube_unavailable(exc: KubeError) -> ApiError:
    return ApiError(502, "cluster_unavailable", f"the cluster did not answer: {exc}")


def accepted(message: str, job: Job | None) -> web.Response:
    body = Accepted(
        message=message,
        changed=job is not None,
        job=JobView.model_validate(job.view()) if job else None,
    )
    headers = {"Location": f"/api/v1/jobs/{job.id}"} if job else {}
    return json_response(body.model_dump(), status=202 if job else 200, headers=headers)


async def install(request: web.Request) -> web.Response:
    body: CloudcoreRequest = await read_body(request, CloudcoreRequest)
    cloudcore, jobs = request.app[CLOUDCORE], request.app[JOBS]
    if (running := jobs.running()) is not None:
        raise busy(Busy(running))
    try:
        plan = await cloudcore.plan(
            body.advertise_address,
            body.kubeedge_version,
            allow_unsupported=body.allow_unsupported_kubernetes,
        )
        status = await cloudcore.status()
    except PlanError as exc:
        raise ApiError(422, "refused", str(exc), exc.details) from exc
    except KubeError as exc:
        raise kube_unavailable(exc) from exc
    if (
        status.installed
        and status.available
        and status.version == plan.version
        and status.advertise_addresses == plan.advertise
        and all(status.ports.values())
    ):
        return accepted(
            f"cloudcore {plan.version} is already installed on {status.node} and available at "
            f"{', '.join(plan.advertise)}: nothing to do",
            None,
        )
    try:
        job = jobs.start(
            "cloudcore-upgrade" if plan.upgrade_from else "cloudcore-install",
            lambda j: cloudcore.install(j, plan),
        )
    except Busy as exc:
        raise busy(exc) from exc
    verb = (
        f"upgrading cloudcore {plan.upgrade_from} to"
        if plan.upgrade_from
        else "installing cloudcore"
    )
    log.info("cloudcore.install", job=job.id, version=plan.version, advertise=plan.advertise)
    where = ", ".join(f"{a} (on {i})" for a, i in plan.interfaces.items())
    return accepted(f"{verb} {plan.version} advertising {where}", job)


async def status(request: web.Request) -> web.Response:
    try:
        s = await request.app[CLOUDCORE].status()
    except KubeError as exc:
        raise kube_unavailable(exc) from exc
    return json_response(CloudcoreStatus(**asdict(s)).model_dump())


async def reset(request: web.Request) -> web.Response:
    cloudcore, jobs = request.app[CLOUDCORE], request.app[JOBS]
    if (running := jobs.running()) is not None:
        raise busy(Busy(running))
    try:
        installed = await cloudcore.kubectl.namespace_exists("kubeedge")
    except KubeError as exc:
        raise kube_unavailable(exc) from exc
    if not installed:
        cloudcore.store.clear_cloudcore()
        return accepted("cloudcore is not installed (no namespace kubeedge): nothing to do", None)
    try:
        job = jobs.start("cloudcore-reset", cloudcore.reset)
    except Busy as exc:
        raise busy(exc) from exc
    return accepted("removing cloudcore (keadm reset)", job)


async def token(request: web.Request) -> web.Response:
    cloudcore = request.app[CLOUDCORE]
    try:
        if await cloudcore.kubectl.deployment("kubeedge", "cloudcore") is None:
            raise ApiError(
                409, "no_cloudcore", "cloudcore is not installed: run kedge-cloud-api init first"
            )
        value, expires = await cloudcore.token()
    except KubeError as exc:
        raise kube_unavailable(exc) from exc
    log.info("token.read", expires_at=expires)
    return json_response(TokenView(token=value, expires_at=expires).model_dump())


CONFLICT = (409, ("another cloudcore job is running", None))
ROUTES = (
    Route(
        "POST",
        "/api/v1/cloudcore",
        install,
        "install or upgrade cloudcore (keadm init with the needed fixes)",
        admin=True,
        request=CloudcoreRequest,
        response=Accepted,
        status=202,
        also={
            200: ("already installed as asked: nothing to do", Accepted),
            CONFLICT[0]: CONFLICT[1],
            502: ("the cluster did not answer", None),
        },
    ),
    Route(
        "GET",
        "/api/v1/cloudcore",
        status,
        "is cloudcore installed, where, which version, are its ports open",
        admin=True,
        response=CloudcoreStatus,
        also={502: ("the cluster did not answer", None)},
    ),
    Route(
        "DELETE",
        "/api/v1/cloudcore",
        reset,
        "remove cloudcore (keadm reset) and wait for its namespace to go",
        admin=True,
        response=Accepted,
        status=202,
        also={
            200: ("not installed: nothing to do", Accepted),
            CONFLICT[0]: CONFLICT[1],
            502: ("the cluster did not answer", None),
        },
    ),
    Route(
        "GET",
        "/api/v1/cloudcore/token",
        token,
        "the current join token and its expiry",
        admin=True,
        response=TokenView,
        also={409: ("cloudcore is not installed", None), 502: ("the cluster did not answer", None)},
    ),
)

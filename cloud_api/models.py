"""The API's request and response bodies. Requests forbid unknown keys, so a typo is a
422 naming the key instead of a silently ignored setting."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from kedge.names import check_release_tag

# The shape of an IPv4 or IPv6 address; whether it is one of this host's is checked later.
IpText = Annotated[str, Field(min_length=2, max_length=45, pattern=r"^[0-9A-Fa-f.:]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- enrollment secrets --------------------------------------------------------
Serial = Annotated[str, Field(pattern=r"^[a-z0-9]{4,64}$")]


class SecretRequest(Strict):
    ttl_s: float | None = Field(None, gt=0, le=365 * 86400, description="seconds until it expires")
    uses: int | None = Field(
        None, ge=1, le=100000, description="how many boards may enroll with it"
    )
    note: str = Field("", max_length=200)
    serials: list[Serial] | None = Field(
        None,
        max_length=10000,
        description="an allowlist of board serials (lower-case letters and digits): a board "
        "not on it waits for approval",
    )
    name_pattern: str | None = Field(
        None,
        max_length=253,
        pattern=r"^[a-z0-9.*?\[\]-]+$",
        description="node names this secret may enroll (fnmatch: rk3000-*); others are refused",
    )
    approval: Literal["auto", "pending"] = Field(
        "auto", description="pending: every board waits for kedge-cloud-api boards approve"
    )
    reflash: Literal["reissue", "pending"] = Field(
        "reissue",
        description="a re-flashed board (an enrolled name, the same serial or MAC, no key): "
        "new credentials under its name and history, or wait for approval",
    )


class SecretCreated(BaseModel):
    id: str
    secret: str = Field(description="shown once; only its hash is stored")
    expires_at: float | None
    uses_left: int | None


class Revoked(BaseModel):
    revoked: str = Field(description="the id of the secret revoked")


class NodeForgotten(BaseModel):
    node: str
    deleted: bool = Field(description="false: the cluster had no Node of that name")


class SecretInfo(BaseModel):
    id: str
    created: float
    expires_at: float | None
    uses_left: int | None
    note: str
    serials: list[str] | None = None
    name_pattern: str | None = None
    approval: str = "auto"
    reflash: str = "reissue"
    boards: list[str] = Field(default_factory=list, description="the boards it enrolled")
    pending: list[str] = Field(default_factory=list, description="boards waiting with it")


# -- cloudcore -------------------------------------------------------------------
class CloudcoreRequest(Strict):
    advertise_address: list[IpText] = Field(
        min_length=1,
        max_length=8,
        description="IP addresses of this host the boards reach (a list, or comma-separated)",
    )
    kubeedge_version: str | None = Field(
        None, description="release tag, default the service's kubeedge_version"
    )
    allow_unsupported_kubernetes: bool = Field(
        False,
        description="install even if the Kubernetes version is outside KubeEdge's supported range",
    )

    @field_validator("advertise_address", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        return [a.strip() for a in v.split(",") if a.strip()] if isinstance(v, str) else v

    @field_validator("kubeedge_version")
    @classmethod
    def _version(cls, v: str | None) -> str | None:
        return check_release_tag(v) if v is not None else None


class CloudcoreStatus(BaseModel):
    installed: bool
    version: str | None = Field(description="the image tag cloudcore runs")
    image: str | None
    node: str | None = Field(description="the node cloudcore's pod runs on")
    pod_phase: str | None
    available: bool = Field(description="the Deployment's Available condition")
    advertise_addresses: list[str] | None = Field(
        description="null when installed outside this API"
    )
    ports: dict[str, bool] = Field(description="address:port -> accepts TCP connections")
    managed: bool = Field(description="installed through this API")
    advisory: str | None = Field(
        None,
        description="the security advisory of the running release and the release that fixes it",
    )


class JobLine(BaseModel):
    t: float
    phase: str
    line: str


class JobError(BaseModel):
    message: str
    details: dict[str, Any]


class JobView(BaseModel):
    id: str
    kind: str
    state: Literal["running", "succeeded", "failed", "interrupted"]
    phase: str
    created: float
    finished: float | None
    lines: list[JobLine] = Field(
        description="the first and the last lines; a marker line where the middle was dropped"
    )
    lines_dropped: int = Field(0, description="log lines not kept (from the middle)")
    result: dict[str, Any] | None
    error: JobError | None


class Accepted(BaseModel):
    message: str
    changed: bool = Field(description="false when there was nothing to do")
    job: JobView | None = Field(description="the background job doing it, when there is one")


class TokenView(BaseModel):
    token: str = Field(description="the join token (keadm gettoken); a secret")
    expires_at: float | None = Field(description="epoch seconds, from the JWT's exp claim")


# -- boards ------------------------------------------------------------------------
# The enrollment request and answer are wire payloads: kedge.wire.enrollment.


class BoardInfo(BaseModel):
    node_name: str
    arch: str
    agent_version: str
    enrolled_at: float
    joined: bool = Field(description="a Node of this name exists in the cluster")
    serial: str | None = None
    enrollments: int = Field(1, description="how often it enrolled (re-flashes included)")
    first_enrolled: float | None = None


class PendingInfo(BaseModel):
    node_name: str
    serial: str | None
    macs: list[str]
    arch: str
    reason: str
    secret_id: str
    requested_at: float
    last_seen: float
    approved: bool = Field(description="approved: it enrolls the next time it asks")
    refused: bool = Field(False, description="refused: asking again, it is told so")


# -- the fleet ----------------------------------------------------------------------
NodeState = Literal["online", "stale", "offline", "unknown"]


class ChecksView(BaseModel):
    ok: bool | None
    counts: dict[str, int] = Field(description="checks by status: pass, warn, fail, skip")
    failing: list[str] = Field(description="ids of the checks that block a join")
    at: float | None


class FirstBootView(BaseModel):
    phase: str = Field(
        description="seed, network, clock, enrolling, checking, fixing, joining, starting, joined"
    )
    state: str = Field(description="running, waiting, blocked (a person must act), done")
    since: float
    summary: str
    remedy: str
    check: str | None
    started_at: float


class NodeSummary(BaseModel):
    node: str
    state: NodeState = Field(
        description="online (its retained status says so and it was heard within "
        "stale_after_s), stale (online but quiet), offline (its will or its goodbye), unknown"
    )
    last_seen: float | None
    ready: bool | None = Field(description="Ready in Kubernetes; null: not a Kubernetes node")
    not_ready_reason: str | None
    join_phase: str | None
    agent_version: str | None
    cpu_percent: float | None
    memory_percent: float | None
    disk_percent: float | None
    temperature_c: float | None
    checks: ChecksView
    allow_remote: list[str] = Field(
        description="remote actions the board accepts beyond ping and check"
    )
    firstboot: FirstBootView | None = Field(
        None, description="its first boot from a seed, as it last said (null: none reported)"
    )
    pods_total: int | None = Field(
        None, description="pods Kubernetes placed on the board; null: not a Kubernetes node"
    )
    pods_running: int | None = Field(None, description="of those, Running")
    clock_ahead_s: float | None = Field(
        None,
        description="its latest health report was dated this many seconds after the API "
        "received it, so it was stored at its receive time: the board's clock is ahead "
        "(null: not)",
    )


class NodePage(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[NodeSummary]


class CommandView(BaseModel):
    id: str
    action: str
    args: dict[str, Any]
    issued_at: float
    expires_at: float
    status: str = Field(description="sent, then the board's: done, failed, rejected or busy")
    reason: str
    result: dict[str, Any] | None
    finished_at: float | None


class PodView(BaseModel):
    namespace: str
    name: str
    phase: str
    reason: str = Field(description="why a container waits or the pod is not running")


class NodeDetail(NodeSummary):
    health: dict[str, Any] | None = Field(description="the latest health report, as sent")
    check_report: dict[str, Any] | None = Field(description="the latest check report, as sent")
    check_history: list[dict[str, Any]] = Field(description="when the verdicts changed")
    commands: list[CommandView]
    pods: list[PodView] = Field(description="the pods Kubernetes placed on the board")


class HealthPoint(BaseModel):
    t: float
    cpu_percent: float | None
    memory_percent: float | None
    disk_percent: float | None
    temperature_c: float | None


class HealthSeries(BaseModel):
    node: str
    step: float
    points: list[HealthPoint]


class CommandRequest(Strict):
    action: Literal["ping", "check", "fix", "join", "reset", "upgrade"]
    args: dict[str, Any] = Field(default_factory=dict)
    ttl_s: float = Field(300.0, ge=5, le=86400, description="the board ignores it after this")


class VerifyRequest(Strict):
    image: str = Field(
        "nginx:1.14.2",
        max_length=255,
        pattern=r"^[a-z0-9]([a-z0-9._:/-]*[a-z0-9])?(:[A-Za-z0-9_.-]{1,128})?(@sha256:[a-f0-9]{64})?$",
        description="the image each board runs (the seed guide's nginx by default)",
    )
    timeout_s: float = Field(180.0, ge=5, le=3600, description="how long to wait for the pods")


class VerifyVerdict(BaseModel):
    result: Literal["running", "pending"]
    reason: str


class VerifyRun(BaseModel):
    job: str
    started_at: float
    finished_at: float
    image: str
    ok: bool = Field(description="every Ready edge board ran the pod")
    running: int
    nodes: dict[str, VerifyVerdict] = Field(description="per board asked")


class Removed(BaseModel):
    node: str
    reset: str | None = Field(
        description="the board's answer to reset (done, rejected, …), sent: no answer in time, null: not asked"
    )
    kubernetes_node_deleted: bool = Field(
        description="false: Kubernetes had no such node, or see kubernetes_error"
    )
    kubernetes_error: str | None = Field(
        None, description="why the node could not be deleted (then do it by hand)"
    )
    forgotten: bool = Field(description="false: the fleet view did not know it")
    enrollment_revoked: bool = Field(
        False,
        description="its enrollment and command key were removed: no command can be sealed "
        "for it any more, and the name is free for a new enrollment",
    )
    broker_identity_removed: bool | None = Field(
        None,
        description="its broker identity was removed and its connection dropped (null: boards "
        "share one broker account here); false: see broker_error",
    )
    broker_error: str | None = Field(None, description="why its broker identity is still there")

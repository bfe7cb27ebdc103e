"""Agent settings: defaults < /etc/kedge/agent.toml < KEDGE_AGENT_* environment < flags.

This module is the only place that knows a default. Every error a user can make here
becomes one ConfigError line naming where the bad value came from (file and key,
environment variable, or flag), what was found and what is expected.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyAddress,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    SettingsConfigDict,
)

from agent import enrollment, seed_state
from kedge import command_auth
from kedge.broker import BrokerSettings, check_topic_levels
from kedge.errors import ConfigError, first_problem
from kedge.kubeedge import (
    CERT_PORT,
    CONTAINERD_ENDPOINT,
    DOCKERSHIM_ENDPOINT,
    KEADM_CERT_WAIT_S,
    KEADM_POLL_S,
    NEWEST,
    OLDEST,
    RUNTIME_ENDPOINTS,
    Release,
)
from kedge.layered import LayeredSettings, Layers, load_layered
from kedge.names import (
    HOSTPORT_RE,
    HTTP_URL_RE,
    IMAGE_REPOSITORY_RE,
    LABEL_KEY_RE,
    LABEL_VALUE_RE,
    TOKEN_CHARS_RE,
    check_release_tag,
)

DEFAULT_CONFIG = Path("/etc/kedge/agent.toml")
CONFIG_ENV = "KEDGE_AGENT_CONFIG"
ENV_PREFIX = "KEDGE_AGENT_"
DEFAULT_DOCKER_SOCKET = "/var/run/docker.sock"
MIN_JOIN_TIMEOUT_S = KEADM_CERT_WAIT_S + KEADM_POLL_S + 20  # and a margin for the steps before


class Thresholds(BaseModel):
    """Resource limits; the defaults are keadm 1.13's `debug check` limits, and for the
    disk edgecore's own kubelet defaults (default_kubelet_configuration.go@v1.23.1): it
    evicts pods and taints the Node DiskPressure below 15 % free (evictionHard
    imagefs.available; nodefs.available 10 %), and its image GC starts deleting unused
    images — the ones kedge pulled for the join among them — at 85 % used."""

    model_config = ConfigDict(extra="forbid")

    min_cpus: int = Field(1, ge=1)
    max_cpu_used_pct: float = Field(90.0, gt=0, le=100)
    cpu_sample_s: float = Field(0.5, gt=0, le=5)
    min_mem_total_mb: int = Field(256, ge=0)
    min_mem_available_mb: int = Field(128, ge=0)
    max_mem_used_pct: float = Field(90.0, gt=0, le=100)
    min_disk_total_mb: int = Field(1024, ge=0)
    min_disk_free_mb: int = Field(512, ge=0)
    min_disk_free_pct: float = Field(15.0, ge=0, lt=100)
    max_disk_used_pct: float = Field(80.0, gt=0, le=100)
    min_pid_headroom_pct: float = Field(5.0, ge=0, lt=100)
    docker_min_free_mb: int = Field(1024, ge=0)


def check_kubeedge_release(tag: str) -> str:
    release = Release(check_release_tag(tag))
    if not release.supported:
        low, high = (f"v{a}.{b}" for a, b in (OLDEST, NEWEST))
        raise ValueError(f"kedge drives KubeEdge {low}.x to {high}.x; {tag} is outside them")
    return tag


class MqttSettings(BrokerSettings):
    """The broker the daemon reports to (`[mqtt]` in the config file): the shared broker
    settings and what only a board needs."""

    discovery_prefix: str = "homeassistant"
    spool_max_messages: int = Field(10000, ge=1)
    spool_max_bytes: int = Field(16 * 1024 * 1024, ge=1024)

    @field_validator("discovery_prefix")
    @classmethod
    def _discovery(cls, v: str) -> str:
        return check_topic_levels(v)


class FirstbootSettings(BaseModel):
    """How long `kedge-agent firstboot` waits for what is outside the board, and how often
    it tries what it does itself (docs/firstboot.md). Every wait is bounded; backoff
    doubles from backoff_s to backoff_cap_s."""

    model_config = ConfigDict(extra="forbid")

    network_wait_s: float = Field(1800.0, gt=0, le=7 * 86400)
    clock_wait_s: float = Field(120.0, ge=0, le=86400)
    pending_wait_s: float = Field(86400.0, gt=0, le=30 * 86400)
    blocked_wait_s: float = Field(6 * 3600.0, ge=0, le=30 * 86400)
    backoff_s: float = Field(5.0, gt=0, le=600)
    backoff_cap_s: float = Field(300.0, gt=0, le=3600)
    fix_attempts: int = Field(3, ge=1, le=10)
    join_attempts: int = Field(3, ge=1, le=10)
    # The first boot is done only once the daemon it started runs and has said so.
    daemon_wait_s: float = Field(60.0, gt=0, le=3600)


class AgentSettings(LayeredSettings):
    """Every setting of kedge-agent, with the default it has when nothing sets it."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    node_name: str | None = None
    cloudcore: str | None = None
    cloudcore_cert_port: int = Field(CERT_PORT, ge=1, le=65535)
    token: SecretStr | None = None
    token_file: Path | None = None
    # The key the cloud API seals this board's commands with (enrollment sets it); a
    # board without one runs no remote command.
    command_key: SecretStr | None = None
    command_key_file: Path | None = None
    kubeedge_version: Annotated[str, AfterValidator(check_kubeedge_release)] = "v1.13.0"
    # docker: dockershim, v1.13 only. The others name a CRI socket's usual place; remote
    # takes remote_runtime_endpoint (containerd's socket when unset).
    runtime: Literal["docker", "containerd", "cri-dockerd", "crio", "remote"] = "docker"
    remote_runtime_endpoint: str | None = None
    cgroup_driver: Literal["auto", "systemd", "cgroupfs"] = "auto"
    image_repository: str | None = None
    # The Node's InternalIP on a board with several interfaces (keadm join --set
    # modules.edged.nodeIP=…, v1.18 on): from v1.20 edgecore picks the default route's.
    node_ip: IPvAnyAddress | None = None
    ntp_servers: list[str] = Field(default_factory=lambda: ["pool.ntp.org"])
    clock_warn_s: float = Field(10.0, gt=0)
    clock_fail_s: float = Field(60.0, gt=0)
    docker_host: str | None = None
    cloud_api_url: str | None = None
    state_dir: Path = Path("/var/lib/kedge-agent")
    check_timeout_s: float = Field(10.0, gt=0, le=600)
    labels: dict[str, str] = Field(default_factory=dict)
    registry_mirrors: list[str] = Field(default_factory=list)
    pull_retries: int = Field(3, ge=1, le=10)
    pull_backoff_s: float = Field(2.0, ge=0, le=60)
    join_timeout_s: float = Field(420.0, le=3600)
    join_settle_s: float = Field(15.0, ge=0, le=600)
    log_level: Literal["debug", "info", "warning", "error"] = "warning"
    thresholds: Thresholds = Field(default_factory=Thresholds)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    report_interval: float = Field(10.0, ge=0.05, le=3600)
    check_interval: float = Field(900.0, ge=1, le=86400)
    allow_remote: list[Literal["fix", "join", "reset", "upgrade"]] = Field(default_factory=list)
    firstboot: FirstbootSettings = Field(default_factory=FirstbootSettings)

    @field_validator("cloudcore")
    @classmethod
    def _hostport(cls, v: str | None) -> str | None:
        if v is not None and not HOSTPORT_RE.fullmatch(v):
            raise ValueError("expected host:port, for example 192.168.31.137:10000")
        return v

    @field_validator("ntp_servers")
    @classmethod
    def _ntp(cls, v: list[str]) -> list[str]:
        for item in v:
            if not HOSTPORT_RE.fullmatch(item) and not HOSTPORT_RE.fullmatch(f"{item}:123"):
                raise ValueError(f"expected a list of host or host:port, got {item!r}")
        return v

    @field_validator("token")
    @classmethod
    def _token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not TOKEN_CHARS_RE.fullmatch(v.get_secret_value()):
            raise ValueError(
                "expected the output of `keadm gettoken` (letters, digits, '.', '_', '-')"
            )
        return v

    @field_validator("command_key")
    @classmethod
    def _command_key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            command_auth.check_key(v.get_secret_value())  # its ValueError names the form
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not LABEL_KEY_RE.fullmatch(key) or not LABEL_VALUE_RE.fullmatch(value):
                raise ValueError(f"label {key}={value!r} is not a valid Kubernetes label")
        return v

    @field_validator("registry_mirrors")
    @classmethod
    def _mirrors(cls, v: list[str]) -> list[str]:
        for item in v:
            if not IMAGE_REPOSITORY_RE.fullmatch(item):
                raise ValueError(f"expected registry host[:port][/path] entries, got {item!r}")
        return v

    @field_validator("image_repository")
    @classmethod
    def _repo(cls, v: str | None) -> str | None:
        if v is not None and not IMAGE_REPOSITORY_RE.fullmatch(v):
            raise ValueError("expected a registry path like registry.example.com/kubeedge")
        return v

    @field_validator("docker_host")
    @classmethod
    def _docker_host(cls, v: str | None) -> str | None:
        if v is not None and not (v.startswith("unix:///") or v.startswith("/")):
            raise ValueError("expected a unix socket, unix:///var/run/docker.sock or a path")
        return v

    @field_validator("join_timeout_s")
    @classmethod
    def _join_timeout(cls, v: float) -> float:
        if v < MIN_JOIN_TIMEOUT_S:
            raise ValueError(
                f"must be at least {MIN_JOIN_TIMEOUT_S} s: keadm itself waits up to "
                f"{KEADM_CERT_WAIT_S} s for edgecore's certificates, polling every {KEADM_POLL_S} s, "
                "and stopping it inside that wait leaves a half-joined board"
            )
        return v

    @field_validator("cloud_api_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not HTTP_URL_RE.fullmatch(v):
            raise ValueError("expected an http:// or https:// URL")
        return v.rstrip("/") if v else v

    @property
    def runtime_endpoint(self) -> str:
        """The CRI socket keadm join and edgecore will use (dockershim's for docker)."""
        if self.runtime == "docker":
            return DOCKERSHIM_ENDPOINT
        if self.remote_runtime_endpoint:
            return self.remote_runtime_endpoint
        return RUNTIME_ENDPOINTS.get(self.runtime, CONTAINERD_ENDPOINT)

    @property
    def docker_socket(self) -> str:
        """The Docker socket path: setting, else DOCKER_HOST, else the standard path."""
        raw = self.docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_SOCKET
        return raw.removeprefix("unix://")


def _with_enrollment(settings: AgentSettings, layers: Layers, root: Path) -> AgentSettings:
    """Fill what the user left at its default from `kedge-agent enroll`'s answer."""
    state_dir = root / str(settings.state_dir).lstrip("/")
    found = enrollment.load(state_dir)
    if found is None:
        return settings
    update: dict[str, Any] = {}
    # The seed's labels, allowed remote actions and mirrors, under the user's own settings.
    for key, value in [*seed_state.as_defaults(state_dir).items(),
                       *enrollment.as_defaults(found, state_dir).items()]:  # fmt: skip
        if layers.origin(key) != "settings":
            continue  # the user's own setting wins
        if key == "token" and layers.origin("token_file") != "settings":
            continue
        update[key] = value
    # Validated as if the user had written them: enrollment.json is a file on the board,
    # and a value that reaches keadm's argv must pass the same checks as a setting.
    try:
        return AgentSettings.model_validate({**dict(settings), **update})
    except ValidationError as exc:
        raise ConfigError(
            f"{state_dir / enrollment.ENROLLMENT_FILE}: {first_problem(exc, 'document')}: "
            "run kedge-agent enroll --again"
        ) from None


def load_settings(
    config: Path | None = None, overrides: dict[str, Any] | None = None, root: Path = Path("/")
) -> AgentSettings:
    """Build the settings from all layers; raise ConfigError naming the first bad value."""
    settings, layers = load_layered(
        AgentSettings, config=config, default=DEFAULT_CONFIG, config_env=CONFIG_ENV,
        overrides=overrides, secret_keys=frozenset({"token"}),
    )  # fmt: skip
    if settings.clock_warn_s >= settings.clock_fail_s:
        raise ConfigError(
            f"{layers.origin('clock_warn_s')}: clock_warn_s ({settings.clock_warn_s:g}) must be below "
            f"clock_fail_s ({settings.clock_fail_s:g})"
        )
    return _with_enrollment(settings, layers, root)

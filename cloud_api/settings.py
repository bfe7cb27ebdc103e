"""kedge-cloud-api settings: defaults < /etc/kedge/cloud-api.toml < KEDGE_CLOUD_* < flags."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import SettingsConfigDict

from kedge.broker import BrokerSettings, check_topic_levels
from kedge.errors import ConfigError, first_problem
from kedge.layered import LayeredSettings, Layers, load_layered
from kedge.names import HOSTPORT_RE, check_release_tag

DEFAULT_CONFIG = Path("/etc/kedge/cloud-api.toml")
CONFIG_ENV = "KEDGE_CLOUD_CONFIG"


class FleetSettings(BaseModel):
    """The fleet view: how reports are kept and when a board counts as gone quiet."""

    model_config = ConfigDict(extra="forbid")

    # Every report for this long, then one row per rollup_s per board, kept rollup_days.
    raw_retention_h: float = Field(6.0, gt=0, le=24 * 30)
    rollup_s: int = Field(300, ge=10, le=86400)
    rollup_days: float = Field(30.0, gt=0, le=3650)
    # An "online" board not heard from for this long shows as stale.
    stale_after_s: float = Field(60.0, gt=0, le=86400)
    # MQTT v5 shared subscription group: API processes in one group split the reports.
    # Empty (one process): a plain subscription, which survives a broker restart.
    share_group: str = Field("", pattern=r"^([A-Za-z0-9_-]{1,64})?$")
    kube_poll_s: float = Field(30.0, ge=1, le=3600)
    batch_max: int = Field(500, ge=1, le=10000)
    batch_wait_s: float = Field(0.2, gt=0, le=10)
    # /readyz answers 503 once the broker link has been down this long: the API still
    # answers, but the fleet view has stopped learning anything.
    ingest_down_ready_s: float = Field(60.0, gt=0, le=86400)


class BrokerAdminSettings(BaseModel):
    """The broker's identities: set (by `broker init`'s record, or here), every enrolled
    board gets its own broker client, made through this admin identity."""

    model_config = ConfigDict(extra="forbid")

    admin_username: str = Field("kedge-admin", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    admin_password_file: Path | None = None
    # The Home Assistant discovery prefix boards publish under (agent: discovery_prefix).
    discovery_prefix: str = "homeassistant"

    @field_validator("discovery_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return check_topic_levels(v)

    @property
    def per_board(self) -> bool:
        return self.admin_password_file is not None


class CloudSettings(LayeredSettings):
    model_config = SettingsConfigDict(
        env_prefix="KEDGE_CLOUD_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    listen: str = "127.0.0.1:8080"
    state_dir: Path = Path("/var/lib/kedge-cloud-api")
    kubeconfig: Path = Path("/root/.kube/config")
    keadm_path: Path | None = None
    kubeedge_version: Annotated[str, AfterValidator(check_release_tag)] = "v1.13.0"
    init_timeout_s: float = Field(300.0, gt=0, le=3600)
    ready_timeout_s: float = Field(180.0, gt=0, le=3600)
    # Limits for anyone who can reach the port (docs/robustness.md).
    max_connections: int = Field(512, ge=8, le=60000)
    # One source address holds at most this many; past it, its own oldest idle one gives
    # way to its new one (docs/robustness.md).
    max_connections_per_address: int = Field(64, ge=1, le=60000)
    # Requests that stay open by design (event streams, ?wait=): in all and per credential.
    long_requests_max: int = Field(128, ge=1, le=60000)
    long_requests_per_token: int = Field(32, ge=1, le=60000)
    header_timeout_s: float = Field(10.0, gt=0, le=300)
    body_timeout_s: float = Field(30.0, gt=0, le=600)
    enroll_rate_per_s: float = Field(1.0, gt=0, le=1000)
    enroll_burst: int = Field(20, ge=1, le=100000)
    # Boards waiting for approval: parking spends no use, so it is bounded apart — per
    # secret (never more than its uses left), and forgotten when not asked about.
    pending_per_secret: int = Field(100, ge=1, le=1000)
    pending_days: float = Field(7.0, gt=0, le=365)
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # The cloud API's own broker connection: it reads every board's reports through it
    # and is the one that publishes commands.
    mqtt: BrokerSettings = Field(default_factory=BrokerSettings)
    # What enrollment hands to boards: the address boards reach the broker at and the
    # boards' account, never the cloud's own.
    board_mqtt: BrokerSettings = Field(default_factory=BrokerSettings)
    broker: BrokerAdminSettings = Field(default_factory=lambda: BrokerAdminSettings())
    fleet: FleetSettings = Field(default_factory=lambda: FleetSettings())

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        if not HOSTPORT_RE.fullmatch(v):
            raise ValueError("expected host:port, for example 0.0.0.0:8080")
        return v


def load_cloud_settings(
    config: Path | None = None, overrides: dict[str, Any] | None = None
) -> CloudSettings:
    settings, layers = load_layered(CloudSettings, config=config, default=DEFAULT_CONFIG,
                                    config_env=CONFIG_ENV, overrides=overrides)  # fmt: skip
    if (settings.tls_cert_file is None) != (settings.tls_key_file is None):
        raise ConfigError("tls_cert_file and tls_key_file go together: set both or neither")
    settings = _with_broker_record(settings, layers)
    if settings.broker.per_board and settings.board_mqtt.username is not None:
        raise ConfigError(
            f"{layers.origin('board_mqtt')}: board_mqtt.username is set, but every board gets "
            "its own broker identity ([broker] admin_password_file is set): remove "
            "board_mqtt.username and board_mqtt.password_file"
        )
    return settings


def _with_broker_record(settings: CloudSettings, layers: Layers) -> CloudSettings:
    """Fill the broker sections from `broker init`'s record: a section left alone comes
    whole from it; in a section of the settings file, the keys written there win."""
    from cloud_api.broker import record

    found = record.load(settings.state_dir)
    if found is None:
        return settings
    update: dict[str, Any] = {}
    for key, value in found.as_defaults().items():
        origin = layers.origin(key)
        if origin == "settings":
            update[key] = value
        elif origin == str(layers.path) and isinstance(layers.data.get(key), dict):
            update[key] = {**value, **layers.data[key]}
    if not update:
        return settings
    try:
        return CloudSettings.model_validate({**dict(settings), **update})
    except ValidationError as exc:
        raise ConfigError(
            f"{record.record_path(settings.state_dir)}: {first_problem(exc, 'document')}: "
            "run kedge-cloud-api broker init again"
        ) from None

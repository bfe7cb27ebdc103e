"""How to reach an MQTT broker: the `[mqtt]` settings both programs read. The board adds
its own keys (spool bounds, discovery prefix) in agent.settings; the cloud's `[mqtt]`
takes only these, so a board-only key there is an error, not a silent no-op."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from kedge.names import TOPIC_LEVELS_RE
from kedge.private_files import read_secret


class BrokerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str | None = None
    port: int = Field(1883, ge=1, le=65535)
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    username: str | None = None
    password_file: Path | None = None
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive_s: int = Field(30, ge=5, le=3600)
    topic_prefix: str = "kedge"

    def read_password(self) -> SecretStr | None:
        """The password in password_file (None without one); ConfigError if unreadable."""
        if self.password_file is None:
            return None
        return SecretStr(read_secret(self.password_file, "mqtt.password_file"))

    @field_validator("topic_prefix")
    @classmethod
    def _topic(cls, v: str) -> str:
        return check_topic_levels(v)


def check_topic_levels(v: str) -> str:
    if not TOPIC_LEVELS_RE.fullmatch(v):
        raise ValueError("expected topic levels of letters, digits, '_' and '-' separated by '/'")
    return v

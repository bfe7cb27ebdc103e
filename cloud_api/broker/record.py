"""What `kedge-cloud-api broker init` set up, kept in `<state_dir>/broker/broker.json`.
The service reads it as defaults for `[mqtt]`, `[board_mqtt]` and `[broker]`, as the
agent reads its enrollment: defaults < broker init's record < file < environment < flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kedge.private_files import read_model

RECORD_FILE = "broker.json"
DIRECTORY = "broker"


class BrokerRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    board_host: str = Field(description="the address boards reach the broker at")
    names: list[str] = Field(description="the server certificate's names")
    port: int = Field(ge=1, le=65535)
    loopback_port: int | None = Field(None, ge=1, le=65535)
    ca_file: Path
    admin_password_file: Path
    cloud_password_file: Path
    topic_prefix: str = "kedge"

    def as_defaults(self) -> dict[str, Any]:
        from cloud_api.broker.identities import ADMIN_USERNAME, CLOUD_USERNAME

        tls = {"port": self.port, "tls": True, "ca_file": self.ca_file,
               "topic_prefix": self.topic_prefix}  # fmt: skip
        return {
            # The API meets the broker on the loopback address, which the certificate names.
            "mqtt": {"host": "127.0.0.1", **tls, "username": CLOUD_USERNAME,
                     "password_file": self.cloud_password_file},
            "board_mqtt": {"host": self.board_host, **tls},
            "broker": {"admin_username": ADMIN_USERNAME,
                       "admin_password_file": self.admin_password_file},
        }  # fmt: skip


def record_path(state_dir: Path) -> Path:
    return state_dir / DIRECTORY / RECORD_FILE


def load(state_dir: Path) -> BrokerRecord | None:
    return read_model(record_path(state_dir), BrokerRecord, "document",
                      "not a record kedge-cloud-api broker init wrote: run it again")  # fmt: skip

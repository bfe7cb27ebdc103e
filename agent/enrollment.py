"""What `kedge-agent enroll` got from the cloud API, kept in the state directory (mode
0600: it holds the join token) and used as settings wherever the user set nothing:
defaults < enrollment < settings file < environment < flags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from agent.errors import ConfigError
from agent.private_files import write_private

ENROLLMENT_FILE = "enrollment.json"
MQTT_PASSWORD_FILE = "mqtt.password"  # noqa: S105 - a file name


class EnrolledMqtt(BaseModel):
    host: str
    port: int
    tls: bool
    username: str | None


class Enrollment(BaseModel):
    cloud_api_url: str
    node_name: str
    cloudcore: str
    cloudcore_cert_port: int
    token: SecretStr
    token_expires_at: float | None
    kubeedge_version: str
    mqtt: EnrolledMqtt | None
    enrolled_at: float


def save(state_dir: Path, enrollment: Enrollment, mqtt_password: str | None) -> None:
    data = enrollment.model_dump(mode="json")
    data["token"] = enrollment.token.get_secret_value()
    if mqtt_password is not None:
        write_private(state_dir / MQTT_PASSWORD_FILE, mqtt_password + "\n")
    else:
        (state_dir / MQTT_PASSWORD_FILE).unlink(missing_ok=True)
    write_private(state_dir / ENROLLMENT_FILE, json.dumps(data, indent=1) + "\n")


def load(state_dir: Path) -> Enrollment | None:
    path = state_dir / ENROLLMENT_FILE
    try:
        return Enrollment.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except ValidationError:
        raise ConfigError(
            f"{path}: not an enrollment kedge-agent wrote: remove it and run kedge-agent enroll "
            "again"
        ) from None


def as_defaults(enrollment: Enrollment, state_dir_setting: Path) -> dict[str, Any]:
    """The settings an enrollment provides (state_dir_setting: the board path, for the
    password file the MQTT client reads)."""
    values: dict[str, Any] = {
        "node_name": enrollment.node_name,
        "cloudcore": enrollment.cloudcore,
        "cloudcore_cert_port": enrollment.cloudcore_cert_port,
        "token": enrollment.token,
        "kubeedge_version": enrollment.kubeedge_version,
        "cloud_api_url": enrollment.cloud_api_url,
    }
    if enrollment.mqtt is not None:
        values["mqtt"] = {
            **enrollment.mqtt.model_dump(),
            "password_file": state_dir_setting / MQTT_PASSWORD_FILE,
        }
    return values

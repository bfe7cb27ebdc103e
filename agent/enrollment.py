"""What `kedge-agent enroll` got from the cloud API, kept in the state directory (mode
0600: it holds the join token) and used as settings wherever the user set nothing:
defaults < enrollment < settings file < environment < flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kedge.errors import ConfigError, first_problem
from kedge.private_files import write_private
from kedge.wire import Enrolled

ENROLLMENT_FILE = "enrollment.json"
MQTT_PASSWORD_FILE = "mqtt.password"  # noqa: S105 - a file name
MQTT_CA_FILE = "mqtt-ca.pem"  # the broker CA enrollment named: the only one the board trusts there


class Enrollment(Enrolled):
    """The cloud's answer as kept on the board (the broker password in its own file)."""

    cloud_api_url: str
    enrolled_at: float


def save(state_dir: Path, enrollment: Enrollment) -> None:
    password = enrollment.mqtt.password if enrollment.mqtt is not None else None
    if password is not None:
        write_private(state_dir / MQTT_PASSWORD_FILE, password.get_secret_value() + "\n")
    else:
        (state_dir / MQTT_PASSWORD_FILE).unlink(missing_ok=True)
    ca_pem = enrollment.mqtt.ca_pem if enrollment.mqtt is not None else None
    if ca_pem is not None:
        write_private(state_dir / MQTT_CA_FILE, ca_pem)
    else:
        (state_dir / MQTT_CA_FILE).unlink(missing_ok=True)
    text = enrollment.model_dump_json(indent=1, exclude={"mqtt": {"password"}})
    write_private(state_dir / ENROLLMENT_FILE, text + "\n")


def load(state_dir: Path) -> Enrollment | None:
    path = state_dir / ENROLLMENT_FILE
    try:
        return Enrollment.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except ValidationError as exc:
        raise ConfigError(
            f"{path}: {first_problem(exc, 'enrollment')} (not an enrollment kedge-agent wrote: "
            "remove it and run kedge-agent enroll --again)"
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
    if enrollment.command_key is not None:
        values["command_key"] = enrollment.command_key
    if enrollment.mqtt is not None:
        values["mqtt"] = {
            **enrollment.mqtt.model_dump(exclude={"password", "ca_pem"}),
            "password_file": state_dir_setting / MQTT_PASSWORD_FILE,
        }
        if enrollment.mqtt.ca_pem is not None:
            values["mqtt"]["ca_file"] = state_dir_setting / MQTT_CA_FILE
    return values

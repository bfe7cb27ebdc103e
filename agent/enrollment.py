"""What `kedge-agent enroll` got from the cloud API, kept in the state directory (mode
0600: it holds the join token) and used as settings wherever the user set nothing:
defaults < enrollment < settings file < environment < flags."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent import board_identity
from kedge import command_auth
from kedge.cloud_client import ApiClient, ClientError
from kedge.host import Host
from kedge.private_files import read_model, write_private
from kedge.seed import reduced
from kedge.wire import Enrolled, EnrollPending, EnrollRequest

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
    return read_model(state_dir / ENROLLMENT_FILE, Enrollment, "enrollment",
                      "not an enrollment kedge-agent wrote: remove it and run kedge-agent "
                      "enroll --again")  # fmt: skip


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


def hardware(host: Host) -> dict[str, Any]:
    """What the request says about the board itself: the machine-id's hash (the same
    installation), its serial and MACs (the same hardware, flashed again or not)."""
    machine_id = (host.read_text("/etc/machine-id") or "").strip()
    serial = board_identity.serial(host)
    mac = board_identity.mac(host)
    fields: dict[str, Any] = {
        "machine_id": hashlib.sha256(machine_id.encode()).hexdigest() if machine_id else None,
        "macs": [reduced(mac)] if mac else [],
    }
    if serial is not None and 4 <= len(reduced(serial)) <= 64:
        fields["serial"] = reduced(serial)
    return fields


def proof_fields(known: Enrollment | None, node: str) -> dict[str, Any]:
    """Enrolling again under the name the last enrollment gave: its key proves the name is
    ours (nothing when there is no such key)."""
    if known is None or known.command_key is None or known.node_name != node:
        return {}
    at = int(time.time())
    return {"proof": command_auth.proof(node, at, known.command_key.get_secret_value()),
            "proof_at": at}  # fmt: skip


async def request(
    url: str,
    body: EnrollRequest,
    *,
    ca_file: Path | None = None,
    ca_sha256: str | None = None,
    timeout: float = 30.0,
) -> Enrollment | EnrollPending:
    """POST /api/v1/enroll: the enrollment, or the notice that the board waits for an
    admin's approval. ClientError (ApiAnswerError for a refusal) otherwise."""
    async with ApiClient(url, timeout=timeout, ca_file=ca_file, ca_sha256=ca_sha256) as api:
        status, answer = await api.call(
            "POST", "/api/v1/enroll", body.model_dump(mode="json", exclude_none=True)
        )
    fields = answer if isinstance(answer, dict) else {}
    try:
        if status == 202:
            return EnrollPending.model_validate(fields)
        return Enrollment.model_validate(
            {**fields, "cloud_api_url": url, "enrolled_at": time.time()}
        )
    except ValidationError as exc:
        raise ClientError(
            f"{url} answered something that is not an enrollment ({exc.error_count()} problems): "
            "is it kedge-cloud-api?"
        ) from None

"""Enrollment: a board's request (POST /api/v1/enroll) and the cloud's answer, which
carries the join token and the broker's password: both WireSecret, sent but never shown."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from kedge.names import DNS1123_SUBDOMAIN_RE, is_dns1123_subdomain
from kedge.wire._base import Payload, WireSecret

DNS1123_SUBDOMAIN_PATTERN = f"^{DNS1123_SUBDOMAIN_RE.pattern}$"
MAC_RE = re.compile(r"[0-9a-f]{12}")


class EnrollRequest(Payload):
    node_name: str = Field(
        max_length=253,
        description="the board's Kubernetes node name (DNS-1123 subdomain)",
        json_schema_extra={"pattern": DNS1123_SUBDOMAIN_PATTERN},
    )
    secret: WireSecret = Field(description="an enrollment secret")
    arch: Literal["amd64", "arm64", "arm"]
    agent_version: str = Field(max_length=64, pattern=r"^[0-9A-Za-z.+~-]+$")
    machine_id: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 of /etc/machine-id: re-enrolling the same board is allowed",
    )
    serial: str | None = Field(
        None,
        pattern=r"^[a-z0-9]{4,64}$",
        description="the board's hardware serial (device tree or DMI), reduced to lower-case "
        "letters and digits: for a secret's allowlist and to recognise a re-flashed board",
    )
    macs: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="its wired MAC addresses (12 lower-case hex digits each)",
    )

    proof: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="enrolling again: HMAC of the name and proof_at under the board's current "
        "command key (kedge.command_auth.proof)",
    )
    proof_at: int | None = Field(None, ge=0, description="when the proof was made (epoch seconds)")

    @field_validator("node_name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not is_dns1123_subdomain(v):
            raise ValueError(
                "expected a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', "
                "starting and ending with a letter or digit"
            )
        return v

    @field_validator("macs")
    @classmethod
    def _macs(cls, v: list[str]) -> list[str]:
        if any(not MAC_RE.fullmatch(m) for m in v):
            raise ValueError("expected 12 lower-case hex digits per MAC address")
        return v

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: WireSecret) -> WireSecret:
        if not 1 <= len(v.get_secret_value()) <= 200:
            raise ValueError("expected 1 to 200 characters")
        return v


class RenewRequest(Payload):
    """An enrolled board asking for fresh credentials (a join token, a new command key)
    without an enrollment secret: its proof made with its current command key is the
    credential."""

    node_name: str = Field(max_length=253, json_schema_extra={"pattern": DNS1123_SUBDOMAIN_PATTERN})
    agent_version: str = Field(max_length=64, pattern=r"^[0-9A-Za-z.+~-]+$")
    proof: str = Field(pattern=r"^[0-9a-f]{64}$", description="kedge.command_auth.proof")
    proof_at: int = Field(ge=0, description="when the proof was made (epoch seconds)")


class BrokerAnswer(Payload):
    """The broker a board reports to, with the credentials it uses there."""

    host: str
    port: int = Field(ge=1, le=65535)
    tls: bool
    username: str | None
    password: WireSecret | None = None
    ca_pem: str | None = Field(
        None,
        max_length=65536,
        description="with tls: the CA (PEM) that signed the broker's certificate; the board pins it",
    )


class Enrolled(Payload):
    node_name: str
    cloudcore: str = Field(description="host:10000, for keadm join --cloudcore-ipport")
    cloudcore_cert_port: int = Field(ge=1, le=65535)
    token: WireSecret = Field(description="the KubeEdge join token")
    token_expires_at: float | None
    kubeedge_version: str
    mqtt: BrokerAnswer | None
    command_key: WireSecret | None = Field(
        None, description="this board's key for the MAC on every command the cloud API sends it"
    )


class EnrollPending(Payload):
    """202 to an enrollment: the board is parked until the cluster admin approves it
    (`kedge-cloud-api boards approve NAME`); it asks again after retry_after_s with the
    same secret, and no use of the secret is spent until then."""

    node_name: str
    state: Literal["pending"] = "pending"
    reason: str = Field(
        description="why it waits: the secret asks for approval, or the "
        "serial is not on the secret's allowlist, or a re-flashed board"
    )
    retry_after_s: int = Field(ge=1)
    approved: bool = False

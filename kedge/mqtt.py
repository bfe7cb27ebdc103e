"""MQTT for both programs, through aiomqtt (which drives paho-mqtt from asyncio): one way
to open a client from the `[mqtt]` settings, and one reading of why a connection failed.

A broker that refuses who we are (bad credentials, not authorised, banned, a client id it
will not take) is told apart from a network that does not carry us: retrying a refusal
quickly only fills the broker's log, and the operator must act, so it gets its own
status and a long backoff.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import SecretStr

from kedge import paho_tables
from kedge.broker import BrokerSettings
from kedge.errors import ConfigError

paho_tables.install()

# MQTT 5 lets a client cap the packets the broker sends it: a huge message is then
# dropped by the broker, never read into our memory (docs/robustness.md).
MAX_INBOUND_PACKET = 64 * 1024
CONNECT_TIMEOUT_S = 10.0
# CONNACK reason codes (MQTT 5; paho maps 3.1.1's 1, 2, 4, 5 onto 132..135) that mean
# "not you", as opposed to "not now".
REFUSALS = {
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorised",
    0x8A: "banned",
    0x8C: "bad authentication method",
}


@dataclass(frozen=True)
class Endpoint:
    """Everything a connection depends on: two equal endpoints need no reconnect."""

    host: str
    port: int
    identifier: str
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive_s: int = 30
    username: str | None = None
    password: SecretStr | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def endpoint(settings: BrokerSettings, identifier: str, key: str = "mqtt") -> Endpoint:
    """The endpoint `[key]` describes; ConfigError if it names no host or an unreadable
    password file."""
    if not settings.host:
        raise ConfigError(f'{key}.host is not set: add [{key}] host = "broker" to the config file')
    return Endpoint(
        host=settings.host, port=settings.port, identifier=identifier, protocol=settings.protocol,
        keepalive_s=settings.keepalive_s, username=settings.username,
        password=settings.read_password(), tls=settings.tls, ca_file=settings.ca_file,
        cert_file=settings.cert_file, key_file=settings.key_file,
    )  # fmt: skip


def tls_context(ep: Endpoint) -> ssl.SSLContext | None:
    if not ep.tls:
        return None
    try:
        context = ssl.create_default_context(cafile=ep.ca_file)
        if ep.cert_file is not None:
            context.load_cert_chain(ep.cert_file, ep.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"mqtt TLS files: {exc}") from exc
    return context


class _Client(aiomqtt.Client):
    """aiomqtt's client, waking for keepalive work every quarter keepalive instead of
    every second: on an idle board that wake-up was a third of the daemon's CPU
    (bench/daemon_footprint.py). PINGREQ still goes out in time, and a dead link is
    still noticed within the keepalive (paho's loop_misc does both)."""

    misc_interval_s = 1.0

    async def _misc_loop(self) -> None:
        while self._client.loop_misc() == paho.MQTT_ERR_SUCCESS:  # noqa: ASYNC110 - a timer
            await asyncio.sleep(self.misc_interval_s)

    def link_lost(self) -> asyncio.Future[None]:
        """Done when the connection ends (its exception says why): what a reader of its
        own inbox waits on instead of iterating `messages`."""
        return self._disconnected


class Batched(_Client):
    """A client whose incoming messages land in `inbox`, a queue the caller drains in
    batches. aiomqtt's `messages` iterator starts a task and a wait for every message;
    at the fleet ingest's thousands a second that was a sixth of its time, and a
    cancelled read can lose a message it had already taken off the queue."""

    inbox: asyncio.Queue[aiomqtt.Message]


def client(
    ep: Endpoint,
    *,
    will: aiomqtt.Will | None = None,
    max_queued_incoming: int = 256,
    session_expiry_s: int = 0,
    manual_ack: bool = False,
    batched: bool = False,
) -> aiomqtt.Client:
    """An aiomqtt client for `ep` (connect with `async with`). Incoming messages beyond
    `max_queued_incoming` are dropped by aiomqtt rather than held without bound (0: no
    bound, for a client that acknowledges only what it has stored).

    session_expiry_s > 0 keeps the broker-side session (its subscriptions and the QoS 1
    messages queued for it) across reconnects and restarts for that long: the client
    never starts clean. manual_ack: a QoS 1 message is acknowledged only by ack(), so
    one the program dies holding is delivered again. batched: a Batched client, read
    from its `inbox` (until its `link_lost()`)."""
    v5 = ep.protocol == "5"
    properties = None
    if v5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.MaximumPacketSize = MAX_INBOUND_PACKET
        if session_expiry_s:
            properties.SessionExpiryInterval = session_expiry_s
    persistent = session_expiry_s > 0
    inbox: asyncio.Queue[aiomqtt.Message] = asyncio.Queue(maxsize=max_queued_incoming)

    def given(maxsize: int = 0) -> asyncio.Queue[aiomqtt.Message]:
        return inbox  # aiomqtt makes its queue by calling queue_type(maxsize=...)

    made = (Batched if batched else _Client)(
        ep.host, ep.port, identifier=ep.identifier, username=ep.username,
        password=ep.password.get_secret_value() if ep.password else None,
        protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
        clean_session=None if v5 else not persistent,
        clean_start=False if persistent else paho.MQTT_CLEAN_START_FIRST_ONLY,
        will=will, keepalive=ep.keepalive_s,
        timeout=CONNECT_TIMEOUT_S, properties=properties, tls_context=tls_context(ep),
        max_queued_incoming_messages=max_queued_incoming,
        queue_type=cast("type[asyncio.Queue[aiomqtt.Message]]", given),
    )  # fmt: skip
    if isinstance(made, Batched):
        made.inbox = inbox
    made.misc_interval_s = max(1.0, ep.keepalive_s / 4)
    if manual_ack:
        made._client.manual_ack_set(True)
    return made


def ack(c: aiomqtt.Client, message: aiomqtt.Message) -> None:
    """Acknowledge a message received by a manual_ack client (PUBACK for QoS 1)."""
    if message.qos > 0:
        c._client.ack(message.mid, message.qos)


@dataclass(frozen=True)
class LinkFailure:
    """Why the broker link is down: `refused` (the broker will not have us: an operator
    must act) or `network` (it may come back by itself)."""

    kind: Literal["refused", "network"]
    reason: str

    def __str__(self) -> str:
        return f"broker refused: {self.reason}" if self.kind == "refused" else self.reason


def classify(exc: BaseException) -> LinkFailure:
    rc = getattr(exc, "rc", None)
    if isinstance(rc, ReasonCode) and rc.value in REFUSALS:
        return LinkFailure("refused", REFUSALS[rc.value])
    if isinstance(rc, int) and rc in (1, 2, 4, 5):  # a 3.1.1 CONNACK as a bare number
        return LinkFailure("refused", REFUSALS[{1: 0x84, 2: 0x85, 4: 0x86, 5: 0x87}[rc]])
    text = str(exc) or type(exc).__name__
    return LinkFailure("network", text)


@dataclass
class Backoff:
    """Capped exponential backoff with full jitter in [½, 1] of the step: a fleet that
    lost its broker does not come back in lockstep."""

    base_s: float
    cap_s: float
    attempt: int = 0

    def next(self) -> float:
        self.attempt += 1
        step = min(self.cap_s, self.base_s * 2.0 ** min(self.attempt - 1, 16))
        return step * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret

    def reset(self) -> None:
        self.attempt = 0


NETWORK_BACKOFF = (1.0, 60.0)
REFUSED_BACKOFF = (30.0, 600.0)

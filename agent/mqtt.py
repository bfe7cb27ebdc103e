"""paho-mqtt driven from the asyncio loop (no paho thread), after aiomqtt's design:
paho's socket callbacks register the socket with the loop, a small task drives
keepalive, and every publish/subscribe gets a future resolved by paho's ack callback.
paho's errors are mapped to MqttError here."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from agent.errors import KedgeError

# Commands are at most 16 KiB (remote.MAX_COMMAND_BYTES); discovery birth messages are
# a few bytes. Anything larger is not for the agent.
MAX_INBOUND_PACKET = 64 * 1024


class MqttError(KedgeError):
    """The broker is unreachable, refused us, or the connection dropped."""


@dataclass(frozen=True)
class BrokerConfig:
    host: str
    port: int
    client_id: str
    protocol: str = "5"
    keepalive_s: int = 30
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    will_topic: str | None = None
    will_payload: str = "offline"


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool


def _check_rc(rc: MQTTErrorCode, what: str) -> None:
    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
        raise MqttError(f"{what}: {paho.error_string(rc)}")


class MqttClient:
    """One connection to the broker. connect() then publish()/subscribe(); messages
    arrive through on_message; `disconnected` is set when the link drops."""

    def __init__(
        self, config: BrokerConfig, on_message: Callable[[MqttClient, Message], None]
    ) -> None:
        self.config = config
        self._loop = asyncio.get_running_loop()
        self._on_message = on_message
        self.disconnected = asyncio.Event()
        self._connected: asyncio.Future[None] = self._loop.create_future()
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._misc: asyncio.Task[None] | None = None
        protocol = paho.MQTTv5 if config.protocol == "5" else paho.MQTTv311
        clean = None if protocol == paho.MQTTv5 else True
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=protocol,
            clean_session=clean,
        )
        c = self._client
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_publish = self._on_ack
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_paho_message
        c.on_socket_open = self._on_socket_open
        c.on_socket_close = self._on_socket_close
        c.on_socket_register_write = self._on_register_write
        c.on_socket_unregister_write = self._on_unregister_write
        if config.username:
            c.username_pw_set(config.username, config.password)
        if config.tls:
            c.tls_set(ca_certs=config.ca_file, certfile=config.cert_file, keyfile=config.key_file)
        if config.will_topic:
            c.will_set(config.will_topic, config.will_payload, qos=1, retain=True)

    # -- paho callbacks (all on the loop's thread, except socket_open during connect) --
    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._loop.call_soon_threadsafe(self._add_reader, sock)

    def _add_reader(self, sock: Any) -> None:
        self._loop.add_reader(sock, lambda: self._client.loop_read())

    def _add_writer(self, sock: Any) -> None:
        self._loop.add_writer(sock, lambda: self._client.loop_write())

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)

    def _on_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._loop.call_soon_threadsafe(self._add_writer, sock)

    def _on_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self._loop.remove_writer(sock)

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        if self._connected.done():
            return
        if rc.is_failure:
            self._connected.set_exception(MqttError(f"broker refused the connection: {rc}"))
        else:
            self._connected.set_result(None)

    def _on_disconnect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: ReasonCode, props: Any
    ) -> None:
        error = MqttError(f"disconnected: {rc}")
        if not self._connected.done():
            self._connected.set_exception(error)
        for fut in self._acks.values():
            if not fut.done():
                fut.set_exception(error)
        self._acks.clear()
        self.disconnected.set()

    def _on_ack(self, client: paho.Client, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        fut = self._acks.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _on_subscribe(
        self, client: paho.Client, userdata: Any, mid: int, rcs: Any, props: Any
    ) -> None:
        self._on_ack(client, userdata, mid, None, props)

    def _on_paho_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self._on_message(self, Message(msg.topic, bytes(msg.payload), bool(msg.retain)))

    async def _misc_loop(self) -> None:
        # loop_misc sends PINGREQ and notices a dead link; a quarter keepalive is often
        # enough, and waking less often is most of the daemon's idle CPU.
        interval = max(1.0, min(5.0, self.config.keepalive_s / 4))
        while True:
            if self._client.loop_misc() != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self.disconnected.set()
                return
            await asyncio.sleep(interval)

    # -- API -------------------------------------------------------------------
    async def connect(self, timeout: float = 10.0) -> None:
        c = self.config
        try:
            async with asyncio.timeout(timeout):
                rc = await self._loop.run_in_executor(
                    None, functools.partial(self._client.connect, c.host, c.port, c.keepalive_s,
                                            properties=self._connect_properties())
                )  # fmt: skip
                _check_rc(rc, f"cannot connect to {c.host}:{c.port}")
                self._misc = asyncio.create_task(self._misc_loop(), name="mqtt-misc")
                await self._connected
        except TimeoutError as exc:
            await self.close()
            raise MqttError(f"no answer from {c.host}:{c.port} within {timeout:g} s") from exc
        except (OSError, ssl.SSLError, socket.gaierror) as exc:
            await self.close()
            raise MqttError(f"cannot connect to {c.host}:{c.port}: {exc}") from exc
        except MqttError:
            await self.close()
            raise

    def _connect_properties(self) -> Properties | None:
        """MQTT 5: tell the broker the largest packet this client takes, so it drops a
        huge message for us instead of sending it (3.1.1 has no such property; the
        receiver checks sizes itself)."""
        if self.config.protocol != "5":
            return None
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.MaximumPacketSize = MAX_INBOUND_PACKET
        return props

    async def publish(self, topic: str, payload: str | bytes, *, qos: int = 1, retain: bool = False,
                      timeout: float = 10.0) -> None:  # fmt: skip
        """Publish; for QoS 1, return once the broker acknowledged it."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttError(f"publish to {topic}: {paho.error_string(info.rc)}")
        if qos == 0:
            return
        await self._wait_ack(info.mid, f"publish to {topic}", timeout)

    async def subscribe(self, topic: str, qos: int = 1, timeout: float = 10.0) -> None:
        rc, mid = self._client.subscribe(topic, qos)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise MqttError(f"subscribe to {topic}: {paho.error_string(rc)}")
        await self._wait_ack(mid, f"subscribe to {topic}", timeout)

    async def _wait_ack(self, mid: int, what: str, timeout: float) -> None:
        fut = self._acks.get(mid)
        if fut is None:
            fut = self._loop.create_future()
            self._acks[mid] = fut
        try:
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError as exc:
            raise MqttError(f"{what}: no acknowledgement within {timeout:g} s") from exc
        finally:
            # Cancelled or timed out, the waiter must not stay behind.
            self._acks.pop(mid, None)

    async def close(self) -> None:
        """Disconnect cleanly (the will is not sent); safe to call twice."""
        with contextlib.suppress(Exception):
            self._client.disconnect()
        if self._misc is not None:
            self._misc.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._misc
            self._misc = None
        sock = self._client.socket()
        if sock is not None:
            self._loop.remove_reader(sock)
            self._loop.remove_writer(sock)
        self.disconnected.set()

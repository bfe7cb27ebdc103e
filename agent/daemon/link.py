"""The daemon's link to the broker: connect, subscribe, say `online` (the Last Will says
`offline`), hand over what arrives, and connect again after a drop — soon after a
network error, slowly after the broker refused us (an operator must act first)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime

import aiomqtt
import structlog

from kedge import mqtt
from kedge.mqtt import Backoff, Endpoint, LinkFailure
from kedge.sdnotify import notify
from kedge.wire import AVAILABLE, NOT_AVAILABLE, Topics

log = structlog.get_logger(__name__)

OnMessage = Callable[[aiomqtt.Client, aiomqtt.Message], None]
OnUp = Callable[[aiomqtt.Client], Coroutine[None, None, None]]


class BrokerLink:
    def __init__(self, endpoint: Endpoint, topics: Topics, subscriptions: Sequence[str],
                 on_message: OnMessage, on_up: OnUp,
                 on_refused: Callable[[], None] | None = None) -> None:  # fmt: skip
        self.endpoint = endpoint
        # Called when the broker will not have us: the credentials may have been renewed
        # on disk since (kedge-agent enroll --renew), and reading them again retargets.
        self.on_refused = on_refused
        self.topics = topics
        self.subscriptions = tuple(subscriptions)
        self.on_message = on_message
        self.on_up = on_up
        self.client: aiomqtt.Client | None = None  # set while connected
        self.connected_since: datetime | None = None
        self.failure: LinkFailure | None = None
        self.attempted = asyncio.Event()  # the first attempt ended, either way
        self.ready_sent = False
        self._retarget = asyncio.Event()
        self._network = Backoff(*mqtt.NETWORK_BACKOFF)
        self._refused = Backoff(*mqtt.REFUSED_BACKOFF)

    def retarget(self, endpoint: Endpoint, topics: Topics, subscriptions: Sequence[str]) -> None:
        """New settings: reconnect now if they change the connection."""
        new = (endpoint, topics, tuple(subscriptions))
        if new != (self.endpoint, self.topics, self.subscriptions):
            self.endpoint, self.topics, self.subscriptions = new
            self._retarget.set()

    async def run(self) -> None:
        while True:
            try:
                await self._session()
            except aiomqtt.MqttError as exc:
                self.failure = mqtt.classify(exc)
                if self.failure.kind == "refused" and self.on_refused is not None:
                    self.on_refused()
            finally:
                self.client = None
            self.attempted.set()
            if self._retarget.is_set():
                self._retarget.clear()
                continue
            await self._back_off()

    async def _back_off(self) -> None:
        failure = self.failure or LinkFailure("network", "disconnected")
        slow, fast = (
            (self._refused, self._network)
            if failure.kind == "refused"
            else (self._network, self._refused)
        )
        fast.reset()
        delay = slow.next()
        event = "mqtt.refused" if failure.kind == "refused" else "mqtt.unreachable"
        log.warning(
            event, broker=self.endpoint.address, error=str(failure), retry_in_s=round(delay, 1)
        )
        self._notify_ready(f"spooling: {failure}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._retarget.wait()

    def _notify_ready(self, status: str) -> None:
        # READY once the first attempt ended either way: the daemon spools meanwhile.
        if not self.ready_sent:
            self.ready_sent = notify("READY=1") or True
        notify(f"STATUS={status}")

    async def _session(self) -> None:
        will = aiomqtt.Will(self.topics.status, NOT_AVAILABLE, qos=1, retain=True)
        client = mqtt.client(self.endpoint, will=will)
        async with client:
            # Subscribed before `online`: online means commands are heard.
            for topic in self.subscriptions:
                await client.subscribe(topic, qos=1)
            await client.publish(self.topics.status, AVAILABLE, qos=1, retain=True)
            self.client, self.failure = client, None
            self.connected_since = datetime.now(UTC)
            self._network.reset()
            self._refused.reset()
            self.attempted.set()
            log.info("mqtt.connected", broker=self.endpoint.address)
            self._notify_ready(f"connected to {self.endpoint.address}")
            receiving = asyncio.create_task(self._receive(client), name="mqtt-receive")
            announcing = asyncio.create_task(self.on_up(client), name="mqtt-announce")
            announcing.add_done_callback(_log_failure)
            retarget = asyncio.create_task(self._retarget.wait(), name="mqtt-retarget")
            try:
                await asyncio.wait((receiving, retarget), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (receiving, announcing, retarget):
                    task.cancel()
                await asyncio.gather(receiving, announcing, retarget, return_exceptions=True)
            self.client = None
            if receiving.done() and not receiving.cancelled() and receiving.exception():
                log.warning("mqtt.disconnected", error=str(receiving.exception()))
                raise receiving.exception()  # type: ignore[misc]
            # Retargeted: leaving the block disconnects cleanly (no will).

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            self.on_message(client, message)

    async def say_offline(self, timeout: float) -> None:
        """Before a clean stop: `offline`, retained (a clean disconnect sends no will)."""
        client = self.client
        if client is None:
            return
        with contextlib.suppress(aiomqtt.MqttError):
            await client.publish(self.topics.status, NOT_AVAILABLE, qos=1, retain=True,
                                 timeout=timeout)  # fmt: skip


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("mqtt.announce_failed", error=f"{type(exc).__name__}: {exc}", exc_info=exc)

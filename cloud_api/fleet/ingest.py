"""Every board's reports, from the broker into the fleet store, and commands the other way.

One MQTT connection with the cloud's own identity (`[mqtt]`), a persistent session
(queued QoS 1 reports survive a restart of this process) and manual acknowledgement: a
report is acknowledged to the broker only after the transaction holding it has
committed, so a kill -9 loses nothing the broker was told we have — the broker sends
the unacknowledged ones again (a duplicate is harmless: rows are keyed by board and
time). Health, checks and command results come through an MQTT v5 shared subscription
($share/<group>/…), so API processes in one group split them; the retained status is a
plain subscription, since a shared one never receives retained messages (MQTT 5.0
§4.8.2) and every process needs every board's status.

A payload that is not what the agent sends (bad JSON, another schema version, a board
speaking for another, too big, a time without a zone, a number that is not finite) is
counted by reason, logged with its topic, and acknowledged — it can never become valid,
and redelivering it forever would stop the queue behind it. So is one the store cannot
take: a batch that fails is written again message by message, and only the messages that
fail alone are dropped (reason "store"). Only a failing database (StoreDown) leaves a
batch unacknowledged, to be delivered again once it is back.

A report dated more than FUTURE_S after it arrived is stored at its receive time and the
board is flagged (clock_ahead_s): kept at its own date it would stay the board's newest
report for good, and every honest report after it would count as history."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import aiomqtt
import structlog
from pydantic import ValidationError

from cloud_api.fleet.store import (
    Checks,
    FleetStore,
    Health,
    Progress,
    Report,
    Result,
    Status,
    StoreDown,
)
from kedge import mqtt
from kedge.broker import BrokerSettings
from kedge.names import is_dns1123_subdomain
from kedge.wire import (
    AVAILABLE,
    NOT_AVAILABLE,
    CheckReport,
    CommandResult,
    FirstBootProgress,
    HealthReport,
    RemoteCommand,
    Topics,
    Versioned,
)
from kedge.wire.topics import every_board, node_of

log = structlog.get_logger(__name__)
MAX_PAYLOAD = mqtt.MAX_INBOUND_PACKET
LEGACY_GROUP = "kedge-cloud"  # the shared group every API process used before plain was the default
SESSION_EXPIRY_S = 7 * 24 * 3600  # a week of reports may wait for the API to come back
SHARED_LEAVES = ("health", "checks", "cmd/result")
DISCONNECT_S = 5.0
FUTURE_S = 300.0  # a board's clock may run this far ahead before its dates are not believed


MODELS: dict[str, type[Versioned]] = {
    "health": HealthReport,
    "checks": CheckReport,
    "cmd/result": CommandResult,
    "firstboot": FirstBootProgress,
}
# Retained, so subscribed plainly: MQTT 5 sends no retained message to a shared subscription.
RETAINED_LEAVES = ("status", "firstboot")


def _stopping() -> bool:
    """This task was asked to stop. aiomqtt can turn the cancellation into "disconnected"
    (an MqttError) or end its message stream quietly, so the request is read here too."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class BadPayload(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def _at_most(when: datetime, now: float) -> tuple[datetime, float | None]:
    """`when`, or the receive time if `when` is beyond FUTURE_S ahead (and by how much)."""
    ahead = when.timestamp() - now
    if ahead <= FUTURE_S:
        return when, None
    return datetime.fromtimestamp(now, UTC), ahead


def parse(prefix: str, topic: str, payload: bytes, now: float) -> Report:
    """The report a message carries; BadPayload saying why not."""
    try:
        return _parse(prefix, topic, payload, now)
    except BadPayload:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure on one message is that message's
        raise BadPayload("invalid", f"{type(exc).__name__}: {exc}") from None


def _parse(prefix: str, topic: str, payload: bytes, now: float) -> Report:
    node = node_of(prefix, topic)
    if node is None or not is_dns1123_subdomain(node):
        raise BadPayload("topic", f"not a board topic: {topic!r}")
    leaf = topic[len(prefix) + len(node) + 2 :]
    if len(payload) > MAX_PAYLOAD:
        raise BadPayload("size", f"{len(payload)} bytes, more than {MAX_PAYLOAD}")
    if leaf == "status":
        word = payload.decode("utf-8", errors="replace")
        if word not in (AVAILABLE, NOT_AVAILABLE):
            raise BadPayload(
                "status", f"expected {AVAILABLE!r} or {NOT_AVAILABLE!r}, got {word[:40]!r}"
            )
        return Status(node, word == AVAILABLE, now)
    model = MODELS.get(leaf)
    if model is None:
        raise BadPayload("topic", f"no such board topic: {topic!r}")
    try:
        parsed = model.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "payload"
        reason = (
            "schema" if first.get("type") in ("literal_error",) and "schema" in where else "invalid"
        )
        raise BadPayload(reason, f"{where}: {first.get('msg', '')}") from None
    if not isinstance(parsed, CommandResult) and getattr(parsed, "node", node) != node:
        raise BadPayload(
            "node", f"a report for {getattr(parsed, 'node', '')!r} on {node!r}'s topic"
        )
    if isinstance(parsed, HealthReport):
        stamp, ahead = _at_most(parsed.timestamp, now)
        if ahead is None:
            return Health(node, parsed, now, payload.decode())
        return Health(node, parsed.model_copy(update={"timestamp": stamp}), now, "", ahead)
    if isinstance(parsed, CheckReport):
        started, _ = _at_most(parsed.started_at, now)
        return Checks(node, parsed.model_copy(update={"started_at": started}), now)
    if isinstance(parsed, FirstBootProgress):
        since, _ = _at_most(parsed.since, now)
        began, _ = _at_most(parsed.started_at, now)
        return Progress(node, parsed.model_copy(update={"since": since, "started_at": began}), now)
    assert isinstance(parsed, CommandResult)
    finished, _ = _at_most(parsed.finished_at, now)
    return Result(node, parsed.model_copy(update={"finished_at": finished}), now)


@dataclass
class IngestStats:
    received: int = 0
    written: int = 0
    batches: int = 0
    bad: Counter[str] = field(default_factory=Counter)
    connected: bool = False
    last_error: str | None = None
    started: float = field(default_factory=time.monotonic)
    # Since when (monotonic) the link has not been up; None while it is.
    down_since: float | None = field(default_factory=time.monotonic)
    crashes: int = 0  # the task ended by an unexpected exception and was started again

    def down_for(self, now: float) -> float:
        return 0.0 if self.down_since is None else now - self.down_since


class Ingest:
    """The cloud API's MQTT link: run() until cancelled; publish() a command."""

    def __init__(
        self,
        settings: BrokerSettings,
        store: FleetStore,
        *,
        identifier: str,
        group: str,
        batch_max: int,
        batch_wait_s: float,
        on_written: Callable[[list[Report]], None] | None = None,
        forget: str | None = None,
    ) -> None:
        self.settings, self.store = settings, store
        self.forget = forget  # an earlier identifier whose session the broker should drop
        self.identifier, self.group = identifier, group
        self.batch_max, self.batch_wait_s = batch_max, batch_wait_s
        self.on_written = on_written
        self.stats = IngestStats()
        self._said_removed: set[str] = set()
        self._client: aiomqtt.Client | None = None
        self._up = asyncio.Event()

    def crashed(self, exc: BaseException) -> None:
        """run() ended by a bug (supervised() starts it again): say so where it shows."""
        self.stats.crashes += 1
        self.stats.last_error = f"the ingest crashed: {type(exc).__name__}: {exc}"

    def subscriptions(self) -> list[str]:
        retained = [every_board(self.settings.topic_prefix, leaf) for leaf in RETAINED_LEAVES]
        return [*retained, *self._reports(self.group)]

    def _reports(self, group: str) -> list[str]:
        """The report filters: plain, or `$share/<group>/…` when several API processes
        split the reports. Plain is the default because mosquitto (2.0) does not keep a
        shared subscription across its own restart: what boards publish between the
        broker's restart and this process's return would reach no one, where a plain
        subscription in the persistent session queues it (docs/robustness.md)."""
        filters = [every_board(self.settings.topic_prefix, leaf) for leaf in SHARED_LEAVES]
        return [f"$share/{group}/{f}" for f in filters] if group else filters

    async def run(self) -> None:
        ep = mqtt.endpoint(self.settings, self.identifier)
        backoff = mqtt.Backoff(*mqtt.NETWORK_BACKOFF)
        if self.forget:
            await self._forget(replace(ep, identifier=self.forget))
        while not _stopping():
            try:
                await self._session(ep, backoff)
            except aiomqtt.MqttError as exc:
                if _stopping():
                    raise asyncio.CancelledError from exc
                failure = mqtt.classify(exc)
                self.stats.last_error = str(failure)
                if failure.kind == "refused":
                    backoff = mqtt.Backoff(*mqtt.REFUSED_BACKOFF)
                wait = backoff.next()
                log.warning("ingest.link_down", error=str(failure), retry_in_s=round(wait, 1))
                await asyncio.sleep(wait)
            finally:
                self.stats.connected = False
                if self.stats.down_since is None:
                    self.stats.down_since = time.monotonic()
                self._client = None
                self._up.clear()

    @staticmethod
    async def _forget(ep: mqtt.Endpoint) -> None:
        """End a session left under an identifier no longer used: mosquitto would queue
        every report for it until persistent_client_expiration. Best effort, bounded."""
        try:
            async with asyncio.timeout(DISCONNECT_S + mqtt.CONNECT_TIMEOUT_S):
                async with mqtt.client(ep):  # clean start, no expiry: the broker drops it
                    pass
        except (aiomqtt.MqttError, TimeoutError) as exc:
            log.info("ingest.old_session_kept", identifier=ep.identifier, error=str(exc))

    async def _session(self, ep: mqtt.Endpoint, backoff: mqtt.Backoff) -> None:
        c = mqtt.client(ep, max_queued_incoming=0, session_expiry_s=SESSION_EXPIRY_S,
                        manual_ack=True, batched=True)  # fmt: skip
        assert isinstance(c, mqtt.Batched)
        await c.__aenter__()
        try:
            await self._consume(c, ep, backoff)
        finally:
            # aiomqtt waits for the broker's goodbye without a bound; a stop must not.
            try:
                async with asyncio.timeout(DISCONNECT_S):
                    await c.__aexit__(None, None, None)
            except TimeoutError:
                log.warning("ingest.disconnect_timeout", broker=ep.address)

    async def _consume(self, c: mqtt.Batched, ep: mqtt.Endpoint, backoff: mqtt.Backoff) -> None:
        await c.subscribe([(t, 1) for t in self.subscriptions()])
        # The session outlives a change of share_group: drop the other form's filters, or
        # the broker would deliver every report twice.
        other = self._reports("" if self.group else LEGACY_GROUP)
        await c.unsubscribe(other)
        self._client, self.stats.connected, self.stats.last_error = c, True, None
        self.stats.down_since = None
        self._up.set()
        backoff.reset()
        log.info("ingest.connected", broker=ep.address, subscriptions=self.subscriptions())
        lost = c.link_lost()
        while not lost.done():
            await self._one_batch(c, lost)
        if lost.exception() is not None:
            raise aiomqtt.MqttError("the link to the broker ended") from lost.exception()
        raise aiomqtt.MqttError("the broker ended the message stream")

    async def _one_batch(self, c: mqtt.Batched, lost: asyncio.Future[None]) -> None:
        inbox = c.inbox
        first = asyncio.ensure_future(inbox.get())
        try:
            waiting: list[asyncio.Future[Any]] = [first, lost]
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not first.done():
                first.cancel()
        if first not in done:
            return
        messages = [first.result()]
        deadline = asyncio.get_running_loop().time() + self.batch_wait_s
        while len(messages) < self.batch_max:
            if not inbox.empty():
                messages.append(inbox.get_nowait())
                continue
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                break
            try:
                messages.append(await asyncio.wait_for(inbox.get(), left))
            except TimeoutError:
                break
        now = time.time()
        reports: list[Report] = []
        for m in messages:
            self.stats.received += 1
            try:
                reports.append(
                    parse(self.settings.topic_prefix, str(m.topic), bytes(m.payload or b""), now)
                )
            except BadPayload as exc:
                self.stats.bad[exc.reason] += 1
                log.warning(
                    "ingest.bad_payload", topic=str(m.topic), reason=exc.reason, error=str(exc)
                )
        if reports:
            # The commit comes before any acknowledgement: see the module's docstring.
            reports = await asyncio.to_thread(self._store, reports)
            self.stats.written += len(reports)
            self.stats.batches += 1
        for m in messages:
            mqtt.ack(c, m)
        if reports and self.on_written is not None:
            self.on_written(reports)

    def _store(self, reports: list[Report]) -> list[Report]:
        """Write the batch; if it fails for its content, write it again one report at a
        time and drop only those that fail alone. StoreDown passes: no report's fault.
        Reports of a board taken out of the fleet are dropped until it enrolls again."""
        try:
            removed = self.store.removed(r.node for r in reports)
        except sqlite3.OperationalError as exc:
            raise StoreDown(str(exc)) from exc
        if removed:
            self.stats.bad["removed"] += sum(r.node in removed for r in reports)
            for node in removed - self._said_removed:
                self._said_removed.add(node)
                log.info("ingest.removed_board_ignored", node=node)
            reports = [r for r in reports if r.node not in removed]
            if not reports:
                return []
        try:
            self.store.write(reports)
        except StoreDown:
            raise
        except Exception:  # noqa: BLE001 - sorted out one report at a time below
            if len(reports) == 1:
                self._refused(reports[0])
                return []
        else:
            return reports
        stored: list[Report] = []
        for r in reports:
            try:
                self.store.write([r])
            except StoreDown:
                raise
            except Exception:  # noqa: BLE001 - this report's own fault, and only its
                self._refused(r)
            else:
                stored.append(r)
        return stored

    def _refused(self, report: Report) -> None:
        self.stats.bad["store"] += 1
        log.exception(
            "ingest.bad_payload", node=report.node, kind=type(report).__name__, reason="store"
        )

    async def publish(self, node: str, command: RemoteCommand, timeout: float = 10.0) -> None:
        """Send a command to one board (QoS 1, never retained: a retained command would
        run again at every reconnect). MqttError when there is no link."""
        try:
            await asyncio.wait_for(self._up.wait(), timeout)
        except TimeoutError:
            raise aiomqtt.MqttError(
                f"no broker link: {self.stats.last_error or 'not connected yet'}"
            ) from None
        client = self._client
        if client is None:
            raise aiomqtt.MqttError("no broker link")
        topic = Topics(self.settings.topic_prefix, node).cmd
        await client.publish(topic, command.to_json(), qos=1, retain=False, timeout=timeout)

"""The fleet view's running parts, started and stopped with the API: the MQTT ingest (when
`[mqtt]` names a broker), Kubernetes' view of the edge nodes every kube_poll_s, the
folding of old health into rollups, and the commands sent to boards with a way to wait
for their results."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import structlog

from cloud_api.fleet.ingest import LEGACY_GROUP, Ingest
from cloud_api.fleet.store import KubeView, Report, Result, SqliteFleetStore
from cloud_api.fleet.verify import verify
from cloud_api.jobs import Job
from cloud_api.kube import Kubectl, KubeError
from cloud_api.settings import CloudSettings
from kedge import command_auth
from kedge.wire import RemoteCommand

log = structlog.get_logger(__name__)
COMPACT_EVERY_S = 300.0
STOP_WAIT_S = 5.0
# A part that crashed is started again after this long, doubling to the last.
RESTART_BACKOFF_S = (1.0, 30.0)


async def supervised(
    name: str,
    work: Callable[[], Coroutine[Any, Any, None]],
    on_crash: Callable[[BaseException], None] | None = None,
) -> None:
    """Run `work()` for good: an unexpected exception is logged with its traceback and
    the work started again after a backoff, so no bug in one part ends it for the life
    of the process. Cancellation ends it."""
    wait, most = RESTART_BACKOFF_S
    while True:
        began = time.monotonic()
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the point: nothing ends the part for good
            log.exception("fleet.part_crashed", part=name, restart_in_s=wait)
            if on_crash is not None:
                on_crash(exc)
        else:
            return
        # A part that ran a good while before crashing starts again promptly.
        if time.monotonic() - began > most:
            wait = RESTART_BACKOFF_S[0]
        await asyncio.sleep(wait)
        wait = min(wait * 2, most)


def client_id(group: str, *, before_0_2: bool = False) -> str:
    """Stable across restarts (the broker keeps this client's session) and unique per
    machine (two API processes with one id would push each other off the broker). The
    '_' keeps it out of the boards' ids (`kedge-<DNS name>`): a board named
    `cloud-…` must never connect with it and take this session over. Before 0.2 it
    had a '-' there (before_0_2: that id, whose session is ended once)."""
    host = "".join(ch for ch in socket.gethostname() if ch.isalnum() or ch in "-_")[:40]
    return f"kedge{'-' if before_0_2 else '_'}cloud-{group}-{host or 'host'}"


class NoBroker(Exception):
    """Commands need the broker link, which is not configured or not up."""

    def __init__(self, message: str, *, configured: bool) -> None:
        super().__init__(message)
        self.configured = configured


class NotEnrolled(Exception):
    """The board has no command key here: a command to it could not be sealed."""


class Fleet:
    def __init__(
        self,
        settings: CloudSettings,
        store: SqliteFleetStore,
        kubectl: Kubectl,
        command_key: Callable[[str], str | None],
    ) -> None:
        self.settings, self.store, self.kubectl = settings, store, kubectl
        self.command_key = command_key  # a board's key from its enrollment
        self.ingest: Ingest | None = None
        if settings.mqtt.host:
            f = settings.fleet
            self.ingest = Ingest(
                settings.mqtt, store, identifier=client_id(f.share_group or LEGACY_GROUP),
                forget=client_id(f.share_group or LEGACY_GROUP, before_0_2=True),
                group=f.share_group, batch_max=f.batch_max, batch_wait_s=f.batch_wait_s,
                on_written=self._written,
            )  # fmt: skip
        self._tasks: list[asyncio.Task[None]] = []
        self._waiting: dict[tuple[str, str], asyncio.Event] = {}
        # Called with the names of the boards whose record just changed (live views).
        self.listeners: set[Callable[[set[str]], None]] = set()
        # Called with each finished verify job's result (live views).
        self.verify_listeners: set[Callable[[dict[str, Any]], None]] = set()
        self.kube_error: str | None = None

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        work: list[Coroutine[Any, Any, None]] = [
            supervised("kube", self._kube_loop),
            supervised("compact", self._compact_loop),
        ]
        if self.ingest is not None:
            work.append(supervised("ingest", self.ingest.run, self.ingest.crashed))
        self._tasks = [asyncio.create_task(w) for w in work]

    async def stop(self) -> None:
        """Cancel the running parts and wait for them, boundedly: a stop never hangs."""
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=STOP_WAIT_S)
            for t in stuck:
                where = [
                    f"{f.f_code.co_filename.rsplit('/', 1)[-1]}:{f.f_lineno}" for f in t.get_stack()
                ]
                log.warning("fleet.stop_timeout", task=t.get_coro().__qualname__, at=where)  # type: ignore[union-attr]
        self._tasks = []

    def _written(self, reports: list[Report]) -> None:
        for r in reports:
            if isinstance(r, Result) and r.result.id is not None:
                event = self._waiting.get((r.node, r.result.id))
                if event is not None:
                    event.set()
        self._changed({r.node for r in reports})

    def _changed(self, names: set[str]) -> None:
        for listener in list(self.listeners):
            listener(names)

    # -- the pod smoke test ------------------------------------------------------------
    async def verify(self, job: Job, image: str, timeout_s: float) -> dict[str, Any]:
        """The verify job; its result is kept (the newest is GET /api/v1/verify) and shown
        to live views."""
        started = time.time()
        result = await verify(job, self.kubectl, image, timeout_s)
        await asyncio.to_thread(self.store.save_verify, job.id, started, time.time(), result)
        latest = self.store.last_verify()
        for listener in list(self.verify_listeners):
            listener(latest or {})
        return result

    # -- Kubernetes -----------------------------------------------------------------
    async def poll_kube(self) -> None:
        """Read the edge nodes' Ready condition into the store (KubeError when kubectl
        cannot; the last good view stays)."""
        nodes = await self.kubectl.nodes()
        pods = await self.kubectl.pods_by_node()
        seen = {
            n.name: KubeView(bool(n.ready), n.ready_reason, pods.get(n.name, []))
            for n in nodes
            if n.edge
        }
        changed = await asyncio.to_thread(self.store.set_kube, seen, time.time())
        if changed:
            self._changed(changed)

    async def _kube_loop(self) -> None:
        while True:
            try:
                await self.poll_kube()
                self.kube_error = None
            except KubeError as exc:
                if self.kube_error != str(exc):
                    log.warning("fleet.kube_unreadable", error=str(exc))
                self.kube_error = str(exc)
            await asyncio.sleep(self.settings.fleet.kube_poll_s)

    async def _compact_loop(self) -> None:
        f = self.settings.fleet
        while True:
            folded = await asyncio.to_thread(
                self.store.compact, time.time(), f.raw_retention_h * 3600, f.rollup_s,
                f.rollup_days * 86400,
            )  # fmt: skip
            if folded:
                log.info("fleet.compacted", folded=folded)
            await asyncio.sleep(COMPACT_EVERY_S)

    # -- commands -------------------------------------------------------------------
    async def send(
        self, node: str, action: str, args: dict[str, Any], ttl_s: float
    ) -> dict[str, Any]:
        if self.ingest is None:
            raise NoBroker(
                "no broker configured: set [mqtt] host in the cloud API's config", configured=False
            )
        key = self.command_key(node)
        if key is None:
            raise NotEnrolled(
                f"{node} did not enroll with this cloud API, so it holds no key to check a "
                "command's MAC and would refuse it: enroll it (kedge-agent enroll)"
            )
        now = datetime.now(UTC)
        seq = await asyncio.to_thread(self.store.next_seq, node)
        command = RemoteCommand(
            id=secrets.token_hex(8),
            action=action,
            issued_at=now,
            expires_at=now + timedelta(seconds=ttl_s),
            args=args,
            seq=seq,
        )
        command = command_auth.seal(command, node, key)
        await asyncio.to_thread(self.store.record_command, node, command)
        try:
            await self.ingest.publish(node, command)
        except aiomqtt.MqttError as exc:
            raise NoBroker(f"the command was not sent: {exc}", configured=True) from exc
        found = self.store.command(node, command.id)
        assert found is not None
        return found

    async def remove(self, node: str, *, reset_first: bool, wait_s: float) -> dict[str, Any]:
        """Take a board out of the fleet: optionally a `reset` command first (answered or
        not within wait_s), then its Kubernetes node deleted, then forgotten here. What
        was done is returned; nothing stops half-way on a board that does not answer."""
        done: dict[str, Any] = {"node": node, "reset": None}
        if reset_first:
            sent = await self.send(node, "reset", {}, ttl_s=max(60.0, wait_s))
            answer = await self.result(node, sent["id"], wait_s)
            done["reset"] = answer["status"] if answer else "sent"
        try:
            done["kubernetes_node_deleted"] = await self.kubectl.delete_node(node)
        except KubeError as exc:
            done["kubernetes_node_deleted"], done["kubernetes_error"] = False, str(exc)
        done["forgotten"] = await asyncio.to_thread(self.store.forget, node)
        self._changed({node})
        return done

    async def result(self, node: str, command_id: str, wait_s: float) -> dict[str, Any] | None:
        """The command's record, once the board answered or wait_s passed."""
        found = self.store.command(node, command_id)
        if found is None or found["status"] != "sent" or wait_s <= 0:
            return found
        event = self._waiting.setdefault((node, command_id), asyncio.Event())
        try:
            # Checked again after registering: the answer may have landed in between.
            found = self.store.command(node, command_id)
            if found is not None and found["status"] == "sent":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), wait_s)
                found = self.store.command(node, command_id)
        finally:
            self._waiting.pop((node, command_id), None)
        return found

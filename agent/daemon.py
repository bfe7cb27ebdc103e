"""`kedge-agent run`: the board daemon.

Tasks, one job each: the connection supervisor (connect, back off with jitter, announce
online, discovery, subscriptions), the reporter (a health report into the spool every
report_interval), the sender (spool → broker in order, deleted on PUBACK), the checker
(preflight every check_interval and on demand), and the watchdog (pings systemd only
while the others are alive). SIGTERM stops gracefully within a bound; SIGHUP reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import sqlite3
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog

from agent import __version__, transient
from agent.checks import CHECKS
from agent.discovery import Topics, discovery_messages
from agent.docker_api import DockerClient
from agent.errors import KedgeError, UserError
from agent.fix import run_fix
from agent.health import HealthCollector
from agent.host import Host
from agent.join import run_join
from agent.mqtt import BrokerConfig, Message, MqttClient, MqttError
from agent.names import is_dns1123_subdomain
from agent.preflight import run_preflight
from agent.private_files import write_private
from agent.remote import CommandRunner
from agent.report import CheckReport, ChecksSummary, RemoteCommand
from agent.reset import reset_board
from agent.sdnotify import notify, watchdog_interval
from agent.settings import AgentSettings
from agent.spool import Spool
from agent.state import StateCorrupt, StateDir

log = structlog.get_logger(__name__)

BACKOFF_BASE_S, BACKOFF_CAP_S = 1.0, 60.0
STOP_TIMEOUT_S = 10.0
ACK_TIMEOUT_S = 10.0
# The status file is rewritten when what it says changes, and at least this often (so
# `kedge-agent status` shows a recent last_report) — not at every report.
STATUS_REFRESH_S = 600.0
ANNOUNCE_DELAY_S = 2.0


def broker_config(settings: AgentSettings, node: str, topics: Topics) -> BrokerConfig:
    m = settings.mqtt
    if not m.host:
        raise UserError('mqtt.host is not set: add [mqtt] host = "broker" to /etc/kedge/agent.toml')
    password = m.read_password()
    return BrokerConfig(
        host=m.host, port=m.port, client_id=f"kedge-{node}", protocol=m.protocol, keepalive_s=m.keepalive_s,
        username=m.username, password=password, tls=m.tls,
        ca_file=str(m.ca_file) if m.ca_file else None, cert_file=str(m.cert_file) if m.cert_file else None,
        key_file=str(m.key_file) if m.key_file else None, will_topic=topics.status,
    )  # fmt: skip


class Daemon:
    def __init__(
        self, settings: AgentSettings, host: Host, reload: Any, cli_args: tuple[str, ...] = ()
    ) -> None:
        self.host = host
        self.cli_args = cli_args  # --config FILE, passed on to transient commands
        self._reload = reload
        self.apply(settings)
        self.state = StateDir(host, settings.state_dir)
        self.state.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        m = settings.mqtt
        self.spool = Spool(
            self.state.path / "spool.db",
            max_messages=m.spool_max_messages,
            max_bytes=m.spool_max_bytes,
        )
        self.client: MqttClient | None = None
        self.stopping = asyncio.Event()
        self.kick = asyncio.Event()
        self.check_now = asyncio.Event()
        self.reconnect = asyncio.Event()
        self.first_attempt = (
            asyncio.Event()
        )  # the first report waits for it, so it is live when it can be
        self.last_checks: CheckReport | None = None
        self.last_report_at: float = 0.0
        self.connected_since: str | None = None
        self.last_error: str | None = None
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._announce_pending = False
        self._troubles: dict[str, str] = {}
        self._status_written: tuple[dict[str, Any], float] | None = None
        self.started_at = time.monotonic()

    def apply(self, settings: AgentSettings) -> None:
        node = settings.node_name or self.host.hostname()
        if not is_dns1123_subdomain(node):
            raise UserError(f"node name {node!r} is not a valid DNS-1123 subdomain; set node_name")
        self.settings, self.node = settings, node
        self.topics = Topics(settings.mqtt.topic_prefix, node)
        self.broker = broker_config(settings, node, self.topics)

    # -- lifecycle -------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        loop.add_signal_handler(signal.SIGINT, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        async with DockerClient(self.settings.docker_socket) as docker:
            self.docker = docker
            self.collector = HealthCollector(self.host, docker, self.node)
            self.commands = CommandRunner(
                self._handlers(),
                list(self.settings.allow_remote),
                self.spool.remember_command,
                known_checks=list(CHECKS),
            )
            for name, job in (("supervisor", self._supervise), ("reporter", self._report_loop),
                              ("sender", self._send_loop), ("checker", self._check_loop),
                              ("watchdog", self._watchdog)):  # fmt: skip
                self.tasks[name] = asyncio.create_task(job(), name=name)
            await self.stopping.wait()
            await self._shutdown()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        return 0

    async def _shutdown(self) -> None:
        notify("STOPPING=1", "STATUS=stopping")
        log.info("daemon.stopping")
        for task in (*self.tasks.values(), *self._background):
            task.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_S / 2):
                await asyncio.gather(
                    *self.tasks.values(), *self._background, return_exceptions=True
                )
        client, self.client = self.client, None
        if client is not None:
            with contextlib.suppress(MqttError):
                async with asyncio.timeout(STOP_TIMEOUT_S / 2):
                    await client.publish(self.topics.status, "offline", retain=True)
            await client.close()
        self.spool.spill()
        self._write_status(force=True)
        self.spool.close()

    def _on_sighup(self) -> None:
        try:
            settings = self._reload()
            old = self.broker
            self.apply(settings)
        except UserError as exc:
            log.exception("daemon.reload_failed", error=str(exc))
            return
        # Everything read per report or per command follows the new settings at once.
        self.commands.allowed = set(settings.allow_remote)
        self.spool.max_messages = settings.mqtt.spool_max_messages
        self.spool.max_bytes = settings.mqtt.spool_max_bytes
        log.info("daemon.reloaded")
        notify("STATUS=settings reloaded")
        if self.broker != old:
            self.reconnect.set()

    # -- connection ------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        # The loop keeps only weak references to tasks: hold them until they finish.
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_message(self, client: MqttClient, msg: Message) -> None:
        # Answer through the connection the command came in on: it may arrive while
        # the supervisor is still announcing, before that connection becomes self.client.
        if msg.topic == self.topics.cmd:
            if msg.retain:
                # A retained command would run again at every reconnect, long after
                # whoever sent it stopped caring: commands are live or not at all.
                log.warning("command.retained_ignored", bytes=len(msg.payload))
                return
            self._spawn(self._command(client, msg.payload), "command")
        elif (
            msg.topic == f"{self.settings.mqtt.discovery_prefix}/status"
            and msg.payload == b"online"
            and not self._announce_pending
        ):
            # Coalesced: a burst of "online" (or a flapping Home Assistant) is one
            # re-announce, after a short random delay as HA's discovery docs advise.
            self._announce_pending = True
            self._spawn(self._announce_later(), "announce")

    async def _announce_later(self) -> None:
        await asyncio.sleep(random.uniform(0.5, ANNOUNCE_DELAY_S))  # noqa: S311
        self._announce_pending = False
        await self._announce()

    async def _announce(self) -> None:
        client = self.client
        if client is None:
            return
        for topic, payload in discovery_messages(
            self.topics, self.settings.mqtt.discovery_prefix, self.settings.report_interval
        ):
            await client.publish(topic, payload, retain=True)
        if self.last_checks is not None:
            await client.publish(
                self.topics.checks, self.last_checks.model_dump_json(by_alias=True), retain=True
            )

    async def _supervise(self) -> None:
        attempt = 0
        ready_sent = False
        while not self.stopping.is_set():
            client = MqttClient(self.broker, self._on_message)
            try:
                await client.connect()
                # Subscribed before announcing: "online" means commands are heard.
                await client.subscribe(self.topics.cmd)
                await client.subscribe(f"{self.settings.mqtt.discovery_prefix}/status")
                await client.publish(self.topics.status, "online", retain=True)
                self.client, attempt, self.last_error = client, 0, None
                self.connected_since = datetime.now(UTC).isoformat()
                await self._announce()
            except MqttError as exc:
                await client.close()
                self.client, self.last_error = None, str(exc)
                self.first_attempt.set()
                attempt += 1
                delay = min(
                    BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** min(attempt - 1, 10)
                ) * random.uniform(0.5, 1.0)  # noqa: S311
                log.warning("mqtt.unreachable", error=str(exc), retry_in_s=round(delay, 1))
                if not ready_sent:
                    ready_sent = notify("READY=1", f"STATUS=spooling: {exc}") or True
                notify(f"STATUS=spooling ({self.spool.depth()} queued): {exc}")
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.stopping.wait()
                continue
            self.first_attempt.set()
            log.info("mqtt.connected", broker=f"{self.broker.host}:{self.broker.port}")
            if not ready_sent:
                ready_sent = notify("READY=1") or True
            notify(f"STATUS=connected to {self.broker.host}:{self.broker.port}")
            self.kick.set()
            self.reconnect.clear()
            waits = [asyncio.create_task(e.wait()) for e in (client.disconnected, self.reconnect)]
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for w in waits:
                w.cancel()
            self.client = None
            if not client.disconnected.is_set():
                await client.close()
            log.warning("mqtt.disconnected")

    # -- reports ---------------------------------------------------------------
    async def _report_loop(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(15):
                await self.first_attempt.wait()
        next_at = loop.time()
        while True:
            try:
                await self._report_once()
            except Exception as exc:  # noqa: BLE001 - one bad report must not end reporting
                self._trouble("report", exc)
            next_at += self.settings.report_interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def _report_once(self) -> None:
        report = await self.collector.collect(
            replayed=self.client is None,
            join_phase=self._join_phase(),
            checks=self._checks_summary(),
            clock_offset_s=self._clock_offset(),
            spool_depth=self.spool.depth(),
            spool_dropped=self.spool.dropped(),
            spool_error=self.spool.error,
        )
        self.last_report_at = time.monotonic()
        # Before the report is queued: at steady state the status then reads the same
        # at every report (depth 0), and the file is not rewritten.
        self._write_status()
        # While the link is down the report goes to disk at once: it must survive a
        # restart. Otherwise it waits in memory for its PUBACK (spool.py).
        dropped = self.spool.put(
            self.topics.health, report.to_json().encode(), durable=self.client is None
        )
        if dropped:
            log.warning("spool.dropped", count=dropped, total=self.spool.dropped())
        self.kick.set()

    def _join_phase(self) -> str | None:
        try:
            record = self.state.load_join()
        except StateCorrupt:
            return "unknown"
        return record.phase if record else None

    def _trouble(self, what: str, exc: BaseException) -> None:
        """Log a failing task's error once per distinct message, not once per interval."""
        message = f"{type(exc).__name__}: {exc}"
        if self._troubles.get(what) != message:
            self._troubles[what] = message
            # A storage or host error is a fact about the board; anything else is a bug.
            trace = None if isinstance(exc, OSError | KedgeError | sqlite3.Error) else exc
            log.error(f"{what}.failed", error=message, exc_info=trace)

    async def _send_loop(self) -> None:
        while True:
            await self.kick.wait()
            self.kick.clear()
            while (client := self.client) is not None and (item := self.spool.oldest()) is not None:
                try:
                    await client.publish(item.topic, item.payload, timeout=ACK_TIMEOUT_S)
                except MqttError as exc:
                    # Not acknowledged in time or the link broke: what waits in memory
                    # must now survive a restart.
                    log.info("spool.send_failed", error=str(exc))
                    self.spool.spill()
                    break
                self.spool.ack(item)

    # -- checks and commands ---------------------------------------------------
    def _checks_summary(self) -> ChecksSummary | None:
        r = self.last_checks
        if r is None:
            return None
        failing = [c.id for c in r.checks if c.status.blocks]
        return ChecksSummary(ok=r.ok, failing=failing, at=r.started_at)

    def _clock_offset(self) -> float | None:
        for c in self.last_checks.checks if self.last_checks else []:
            if c.id == "clock" and isinstance(c.details.get("offset_s"), int | float):
                return float(c.details["offset_s"])
        return None

    async def _run_checks(self, only: list[str] | None = None) -> CheckReport:
        report = await run_preflight(self.settings, self.host, only=only or ())
        if not only:
            self.last_checks = report
            client = self.client
            if client is not None:
                with contextlib.suppress(MqttError):
                    await client.publish(
                        self.topics.checks, report.model_dump_json(by_alias=True), retain=True
                    )
        return report

    async def _check_loop(self) -> None:
        while True:
            await self._run_checks()
            self.check_now.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.check_interval):
                    await self.check_now.wait()

    def _handlers(self) -> dict[str, Any]:
        async def ping(cmd: RemoteCommand) -> dict[str, Any]:
            return {"pong": datetime.now(UTC).isoformat(), "version": __version__}

        async def check(cmd: RemoteCommand) -> dict[str, Any]:
            only = [str(i) for i in cmd.args.get("only", [])]
            report = await self._run_checks(only or None)
            return {"ok": report.ok, "summary": f"{sum(c.status.blocks for c in report.checks)} failing",
                    "checks": {c.id: c.status.value for c in report.checks}}  # fmt: skip

        async def fix(cmd: RemoteCommand) -> dict[str, Any]:
            only = [str(i) for i in cmd.args.get("only", [])]
            dry_run = bool(cmd.args.get("dry_run"))
            if transient.available(self.host):
                args = [
                    *(["--only", ",".join(only)] if only else []),
                    *(["--dry-run"] if dry_run else []),
                ]
                return await self._outside_sandbox(cmd, args)
            with self.state.lock("fix (remote)"):
                report = await run_fix(
                    self.settings, self.host, only=only, dry_run=dry_run, emit=self._emit
                )
            return report.model_dump(mode="json", exclude={"checks"})

        async def join(cmd: RemoteCommand) -> dict[str, Any]:
            if transient.available(self.host):
                return await self._outside_sandbox(cmd, [])
            with self.state.lock("join (remote)"):
                report = await run_join(
                    self.settings, self.host, self.state, ignore=[], emit=self._emit
                )
            self.collector.refresh_edgecore_soon()
            return report.model_dump(mode="json", exclude={"checks"})

        async def reset(cmd: RemoteCommand) -> dict[str, Any]:
            if transient.available(self.host):
                return await self._outside_sandbox(cmd, [])
            with self.state.lock("reset (remote)"):
                changes = await reset_board(self.host, self.docker)
                self.state.clear_join()
            self.collector.refresh_edgecore_soon()
            return {
                "summary": f"removed {len(changes)} items",
                "changes": [c.model_dump() for c in changes],
            }

        return {"ping": ping, "check": check, "fix": fix, "join": join, "reset": reset}

    async def _outside_sandbox(self, cmd: RemoteCommand, args: list[str]) -> dict[str, Any]:
        """The CLI command as a transient unit (agent/transient.py); its report."""
        report = await transient.run_action(
            self.host, cmd.action, [*self.cli_args, *args], command_id=cmd.id,
            report_dir=self.state.path, timeout=self.settings.join_timeout_s + 120, emit=self._emit,
        )  # fmt: skip
        self.collector.refresh_edgecore_soon()
        report.pop("checks", None)
        return report

    def _emit(self, line: str) -> None:
        log.info("command.progress", line=line)

    async def _command(self, client: MqttClient, payload: bytes) -> None:
        result = await self.commands.execute(payload)
        try:
            await client.publish(self.topics.cmd_result, result.to_json())
        except MqttError as exc:
            log.warning("command.result_lost", id=result.id, error=str(exc))

    # -- watchdog and status ---------------------------------------------------
    async def _watchdog(self) -> None:
        interval = watchdog_interval()
        if interval is None:
            return
        while True:
            alive = all(not t.done() for n, t in self.tasks.items() if n != "watchdog")
            # Before the first report the clock starts at the daemon's start (which waits
            # up to 15 s for the broker), so a start is not reported as a hang.
            since = max(self.last_report_at, self.started_at + 15)
            fresh = time.monotonic() - since < 3 * self.settings.report_interval + 5
            if alive and fresh:
                notify("WATCHDOG=1")
            else:
                log.error("watchdog.withheld", tasks_alive=alive, reports_fresh=fresh)
            await asyncio.sleep(interval)

    def _write_status(self, *, force: bool = False) -> None:
        summary = self._checks_summary()
        status = {
            "pid": os.getpid(),
            "node": self.node,
            "broker": f"{self.broker.host}:{self.broker.port}",
            "connected": self.client is not None,
            "connected_since": self.connected_since if self.client is not None else None,
            "last_error": self.last_error,
            "spool_depth": self.spool.depth(),
            "spool_dropped": self.spool.dropped(),
            "spool_error": self.spool.error,
            "checks": summary.model_dump(mode="json") if summary else None,
        }
        now = time.monotonic()
        if not force and self._status_written is not None:
            written, at = self._status_written
            if written == status and now - at < STATUS_REFRESH_S:
                return
        self._status_written = (status, now)
        document = {
            **status,
            "last_report": datetime.now(UTC).isoformat() if self.last_report_at else None,
        }
        try:
            write_private(
                self.state.path / "daemon.json", json.dumps(document, indent=2), fsync=False
            )
        except OSError as exc:
            self._trouble("status_file", exc)


def status_path(state: StateDir) -> Path:
    return state.path / "daemon.json"

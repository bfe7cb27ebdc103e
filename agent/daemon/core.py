"""The daemon's lifecycle: build the jobs from the settings, run them, keep systemd's
watchdog fed only while they are alive, reload on SIGHUP, stop within a bound on
SIGTERM (offline said, unacknowledged reports on disk, status written)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta

import aiomqtt
import structlog

from agent.checks import CHECKS
from agent.daemon.checking import Checker
from agent.daemon.commanding import CommandDesk, RemoteActions
from agent.daemon.firstboot_relay import FirstBootRelay
from agent.daemon.link import BrokerLink
from agent.daemon.reporting import Reporter
from agent.daemon.status_file import StatusFile, status_path
from agent.daemon.troubles import Troubles
from agent.discovery import discovery_messages
from agent.docker_api import DockerClient
from agent.health import HealthCollector
from agent.remote import CommandRunner
from agent.settings import AgentSettings
from agent.spool import Spool
from agent.state import StateDir
from kedge import mqtt
from kedge.errors import ConfigError, UserError
from kedge.host import Host
from kedge.mqtt import Endpoint
from kedge.names import is_dns1123_subdomain
from kedge.private_files import read_secret
from kedge.sdnotify import notify, watchdog_interval
from kedge.wire import AVAILABLE, DaemonStatus, Topics

log = structlog.get_logger("agent.daemon")

STOP_TIMEOUT_S = 10.0
ANNOUNCE_DELAY_S = 2.0
# Births that arrive once a re-announce has begun get one more round, this long after it.
ANNOUNCE_COOLDOWN_S = 5.0
START_GRACE_S = 15.0  # the first report may wait this long for the broker


class Daemon:
    def __init__(self, settings: AgentSettings, host: Host,
                 reload: Callable[[], AgentSettings], cli_args: tuple[str, ...] = ()) -> None:  # fmt: skip
        self.host = host
        self._reload = reload
        self.settings, self.node, self.topics, self.endpoint = _derive(settings, host)
        self.state = StateDir(host, settings.state_dir)
        self.state.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        m = settings.mqtt
        self.spool = Spool(self.state.path / "spool.db", max_messages=m.spool_max_messages,
                           max_bytes=m.spool_max_bytes)  # fmt: skip
        self.troubles = Troubles()
        self.status_file = StatusFile(status_path(self.state))
        self.docker = DockerClient(settings.docker_socket)
        self.collector = HealthCollector(host, self.docker, self.node)
        self.collector.allow_remote = list(settings.allow_remote)
        self.link = BrokerLink(self.endpoint, self.topics, self._subscriptions(),
                               self._on_message, self._on_up, on_refused=self._on_sighup)  # fmt: skip
        self.checker = Checker(lambda: self.settings, host, lambda: self.link.client,
                               lambda: self.topics)  # fmt: skip
        self.reporter = Reporter(self.collector, self.spool, self.link, self.checker, self.state,
                                 self.troubles, self._write_status)  # fmt: skip
        self.reporter.interval = settings.report_interval
        actions = RemoteActions(lambda: self.settings, host, self.state, self.docker,
                                self.checker, self.collector, cli_args)  # fmt: skip
        self.commands = CommandRunner(actions.table(), list(settings.allow_remote),
                                      self.spool.remember_command, known_checks=list(CHECKS),
                                      node=lambda: self.node, key=self._command_key,
                                      sequence=self.spool.advance_sequence)  # fmt: skip
        self.desk = CommandDesk(self.commands, lambda: self.topics)
        self.firstboot = FirstBootRelay(
            self.state.path, lambda: self.link.client, lambda: self.topics
        )
        self.stopping = asyncio.Event()
        self.started_at = time.monotonic()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._announce: asyncio.Task[None] | None = None
        self._announce_again = False

    def _command_key(self) -> str | None:
        """The key this board's commands are sealed with (see kedge.command_auth)."""
        s = self.settings
        if s.command_key is not None:
            return s.command_key.get_secret_value()
        if s.command_key_file is not None:
            try:
                return read_secret(s.command_key_file, "command_key_file")
            except ConfigError as exc:
                log.warning("command.key_unreadable", error=str(exc))
        return None

    def _subscriptions(self) -> list[str]:
        return [self.topics.cmd, f"{self.settings.mqtt.discovery_prefix}/status"]

    # -- lifecycle -------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        jobs: dict[str, Callable[[], Coroutine[None, None, None]]] = {
            "link": self.link.run, "reporter": self.reporter.report_loop,
            "sender": self.reporter.send_loop, "checker": self.checker.loop,
            "watchdog": self._watchdog, "firstboot": self.firstboot.loop,
        }  # fmt: skip
        async with self.docker:
            for name, job in jobs.items():
                self.tasks[name] = asyncio.create_task(job(), name=name)
            await self.stopping.wait()
            await self._shutdown()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        return 0

    async def _shutdown(self) -> None:
        notify("STOPPING=1", "STATUS=stopping")
        log.info("daemon.stopping")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_S / 3):
                await self.link.say_offline(STOP_TIMEOUT_S / 3)
        running = [t for n, t in self.tasks.items() if n != "link"]
        if self._announce is not None:
            running.append(self._announce)
        for task in running:
            task.cancel()
        await self.desk.cancel()
        # The link last: leaving its session disconnects cleanly, so no will is sent.
        self.tasks["link"].cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(STOP_TIMEOUT_S / 2):
                await asyncio.gather(*running, self.tasks["link"], return_exceptions=True)
        self.spool.spill()
        self._write_status(force=True)
        self.spool.close()

    def _on_sighup(self) -> None:
        try:
            settings, node, topics, endpoint = _derive(self._reload(), self.host)
        except UserError as exc:
            log.error("daemon.reload_failed", error=str(exc))  # noqa: TRY400 - a user error, no trace
            return
        self.settings, self.node, self.topics, self.endpoint = settings, node, topics, endpoint
        # Everything read per report or per command follows the new settings at once.
        self.commands.allowed = set(settings.allow_remote)
        self.collector.allow_remote = list(settings.allow_remote)
        self.spool.max_messages = settings.mqtt.spool_max_messages
        self.spool.max_bytes = settings.mqtt.spool_max_bytes
        self.reporter.interval = settings.report_interval
        self.link.retarget(endpoint, topics, self._subscriptions())
        log.info("daemon.reloaded")
        notify("STATUS=settings reloaded")

    # -- what arrives, and what is said on (re)connect --------------------------
    def _on_message(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        if message.topic.matches(self.topics.cmd):
            self.desk.take(client, message)
        elif (
            message.topic.matches(f"{self.settings.mqtt.discovery_prefix}/status")
            and message.payload == AVAILABLE.encode()
        ):
            if self._announce is not None and not self._announce.done():
                self._announce_again = True
            else:
                self._announce = asyncio.get_running_loop().create_task(
                    self._announce_later(client)
                )

    async def _announce_later(self, client: aiomqtt.Client) -> None:
        """Coalesced: a burst of "online" (or a flapping Home Assistant) is one re-announce,
        after a short random delay as HA's discovery docs advise; births that arrive once
        it has begun get one more round after a cooldown, however slowly the burst comes
        in — answered, never amplified."""
        while True:
            await asyncio.sleep(random.uniform(0.5, ANNOUNCE_DELAY_S))  # noqa: S311
            self._announce_again = False
            await self._on_up(client)
            await asyncio.sleep(ANNOUNCE_COOLDOWN_S)
            if not self._announce_again:
                return

    async def _on_up(self, client: aiomqtt.Client) -> None:
        """Discovery and the latest checks, retained; then the spool may flow."""
        self.reporter.kick.set()
        self.firstboot.resend()
        try:
            for topic, payload in discovery_messages(
                self.topics, self.settings.mqtt.discovery_prefix, self.settings.report_interval
            ):
                await client.publish(topic, payload, qos=1, retain=True)
            await self.checker.publish(client)
        except aiomqtt.MqttError as exc:
            log.info("mqtt.announce_interrupted", error=str(exc))

    # -- watchdog and status ---------------------------------------------------
    async def _watchdog(self) -> None:
        interval = watchdog_interval()
        if interval is None:
            return
        while True:
            alive = all(not t.done() for n, t in self.tasks.items() if n != "watchdog")
            # Before the first report the clock starts at the daemon's start (which waits
            # for the broker a while), so a start is not reported as a hang.
            since = max(self.reporter.last_report_at, self.started_at + START_GRACE_S)
            fresh = time.monotonic() - since < 3 * self.reporter.interval + 5
            if alive and fresh:
                notify("WATCHDOG=1")
            else:
                log.error("watchdog.withheld", tasks_alive=alive, reports_fresh=fresh)
            await asyncio.sleep(interval)

    def _write_status(self, *, force: bool = False) -> None:
        link = self.link
        status = DaemonStatus(
            pid=os.getpid(), node=self.node, broker=self.endpoint.address,
            connected=link.client is not None,
            connected_since=link.connected_since.timestamp() if link.client and link.connected_since else None,
            last_error=str(link.failure) if link.failure else None,
            refused=link.failure.reason if link.failure and link.failure.kind == "refused" else None,
            spool_depth=self.spool.depth(), spool_dropped=self.spool.dropped(),
            spool_error=self.spool.error, checks=self.checker.summary(),
            last_report=_wall(self.reporter.last_report_at),
        )  # fmt: skip
        try:
            self.status_file.write(status, force=force)
        except OSError as exc:
            self.troubles.note("status_file", exc)


def _derive(settings: AgentSettings, host: Host) -> tuple[AgentSettings, str, Topics, Endpoint]:
    """What the settings mean for this board: its node name, topics and broker."""
    node = settings.node_name or host.hostname()
    if not is_dns1123_subdomain(node):
        raise UserError(f"node name {node!r} is not a valid DNS-1123 subdomain; set node_name")
    endpoint = mqtt.endpoint(settings.mqtt, identifier=f"kedge-{node}")
    return settings, node, Topics(settings.mqtt.topic_prefix, node), endpoint


def _wall(monotonic_at: float) -> datetime | None:
    if not monotonic_at:
        return None
    return datetime.now(UTC) - timedelta(seconds=time.monotonic() - monotonic_at)

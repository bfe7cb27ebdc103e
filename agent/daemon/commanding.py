"""Remote commands on this board: what arrives on kedge/<node>/cmd is checked by
agent/remote.py (size, shape, lifetime, once, allowed, one at a time); this module
says what each action does here and sends the result back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import aiomqtt
import structlog

from agent import __version__, transient
from agent.daemon.checking import Checker
from agent.docker_api import DockerClient
from agent.fix import run_fix
from agent.health import HealthCollector
from agent.join import run_join
from agent.remote import CommandRunner
from agent.reset import reset_board
from agent.settings import AgentSettings
from agent.state import StateDir
from agent.upgrade import run_upgrade
from kedge.host import Host
from kedge.wire import RemoteCommand, Topics

log = structlog.get_logger(__name__)

# The `result` object of a command result (kedge.wire.CommandResult.result).
Answer = dict[str, object]


class RemoteActions:
    """ping, check, fix, join, reset and upgrade as this board runs them. Under systemd the
    mutating ones run as a transient unit outside the daemon's sandbox."""

    def __init__(self, settings: Callable[[], AgentSettings], host: Host, state: StateDir,
                 docker: DockerClient, checker: Checker, collector: HealthCollector,
                 cli_args: tuple[str, ...]) -> None:  # fmt: skip
        self._settings = settings
        self.host = host
        self.state = state
        self.docker = docker
        self.checker = checker
        self.collector = collector
        self.cli_args = cli_args  # --config FILE, passed on to transient commands

    def table(self) -> dict[str, Callable[[RemoteCommand], Awaitable[Answer]]]:
        return {"ping": self.ping, "check": self.check, "fix": self.fix, "join": self.join,
                "reset": self.reset, "upgrade": self.upgrade}  # fmt: skip

    async def ping(self, cmd: RemoteCommand) -> Answer:
        return {"pong": datetime.now(UTC).isoformat(), "version": __version__}

    async def check(self, cmd: RemoteCommand) -> Answer:
        only = [str(i) for i in cmd.args.get("only", [])]
        report = await self.checker.run(only or None)
        return {"ok": report.ok, "summary": f"{sum(c.status.blocks for c in report.checks)} failing",
                "checks": {c.id: c.status.value for c in report.checks}}  # fmt: skip

    async def fix(self, cmd: RemoteCommand) -> Answer:
        only = [str(i) for i in cmd.args.get("only", [])]
        dry_run = bool(cmd.args.get("dry_run"))
        if transient.available(self.host):
            args = [
                *(["--only", ",".join(only)] if only else []),
                *(["--dry-run"] if dry_run else []),
            ]
            return await self._outside_sandbox(cmd, args)
        with self.state.lock("fix (remote)"):
            report = await run_fix(self._settings(), self.host, only=only, dry_run=dry_run,
                                   emit=_progress)  # fmt: skip
        return report.model_dump(mode="json", exclude={"checks"})

    async def join(self, cmd: RemoteCommand) -> Answer:
        if transient.available(self.host):
            return await self._outside_sandbox(cmd, [])
        with self.state.lock("join (remote)"):
            report = await run_join(
                self._settings(), self.host, self.state, ignore=[], emit=_progress
            )
        self.collector.refresh_edgecore_soon()
        return report.model_dump(mode="json", exclude={"checks"})

    async def reset(self, cmd: RemoteCommand) -> Answer:
        if transient.available(self.host):
            return await self._outside_sandbox(cmd, [])
        with self.state.lock("reset (remote)"):
            changes = await reset_board(self.host, self.docker, self._settings())
            self.state.clear_join()
        self.collector.refresh_edgecore_soon()
        return {
            "summary": f"removed {len(changes)} items",
            "changes": [c.model_dump() for c in changes],
        }

    async def upgrade(self, cmd: RemoteCommand) -> Answer:
        """The cloud API names the release cloudcore runs (args.cloud_version) and may
        name the target (args.to); agent/remote.py checked both are release tags."""
        to = (
            cmd.args.get("to") or cmd.args.get("cloud_version") or self._settings().kubeedge_version
        )
        cloud = cmd.args.get("cloud_version")
        if cloud is None:
            return {"ok": False, "summary": "args.cloud_version is missing: the cloud API sends it"}
        if transient.available(self.host):
            return await self._outside_sandbox(
                cmd, ["--to", str(to), "--cloud-version", str(cloud)]
            )
        with self.state.lock("upgrade (remote)"):
            report = await run_upgrade(self._settings(), self.host, self.state, target=str(to),
                                       cloud=str(cloud), emit=_progress)  # fmt: skip
        self.collector.refresh_edgecore_soon()
        return report.model_dump(mode="json", exclude={"checks"})

    async def _outside_sandbox(self, cmd: RemoteCommand, args: list[str]) -> Answer:
        """The CLI command as a transient unit (agent/transient.py); its report."""
        report = await transient.run_action(
            self.host, cmd.action, [*self.cli_args, *args], command_id=cmd.id,
            report_dir=self.state.path, timeout=self._settings().join_timeout_s + 120, emit=_progress,
        )  # fmt: skip
        self.collector.refresh_edgecore_soon()
        report.pop("checks", None)
        return report


def _progress(line: str) -> None:
    log.info("command.progress", line=line)


class CommandDesk:
    """Takes commands off the link and answers each on the connection it came in on
    (it may arrive while the link is still announcing)."""

    def __init__(self, runner: CommandRunner, topics: Callable[[], Topics]) -> None:
        self.runner = runner
        self._topics = topics
        self._running: set[asyncio.Task[None]] = set()

    def take(self, client: aiomqtt.Client, message: aiomqtt.Message) -> None:
        if message.retain:
            # A retained command would run again at every reconnect, long after whoever
            # sent it stopped caring: commands are live or not at all.
            log.warning("command.retained_ignored", bytes=len(_payload(message)))
            return
        task = asyncio.get_running_loop().create_task(self._answer(client, _payload(message)))
        # The loop keeps only weak references to tasks: hold them until they finish.
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _answer(self, client: aiomqtt.Client, payload: bytes) -> None:
        result = await self.runner.execute(payload)
        try:
            await client.publish(self._topics().cmd_result, result.to_json(), qos=1)
        except aiomqtt.MqttError as exc:
            log.warning("command.result_lost", id=result.id, error=str(exc))

    async def cancel(self) -> None:
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)


def _payload(message: aiomqtt.Message) -> bytes:
    p = message.payload
    if isinstance(p, bytes | bytearray):
        return bytes(p)
    return p.encode() if isinstance(p, str) else b""

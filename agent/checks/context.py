"""What a check can see: settings, the host seam and shared, computed-once facts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from agent.checks.facts import Facts
from agent.docker_api import DockerClient
from agent.settings import AgentSettings
from agent.state import JoinRecord, StateCorrupt, StateDir
from kedge.host import Host, ProcessInfo
from kedge.private_files import read_secret

T = TypeVar("T")


class CheckContext:
    """Per-run state. Facts several checks need (docker /info, the process list) are
    fetched once and shared, so running checks concurrently costs no extra I/O."""

    def __init__(self, settings: AgentSettings, host: Host, docker: DockerClient) -> None:
        self.settings = settings
        self.host = host
        self.docker = docker
        self.facts = Facts()
        self._memo: dict[str, asyncio.Task[Any]] = {}

    def node_name(self) -> str:
        return self.settings.node_name or self.host.hostname()

    def _once(self, key: str, make: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        task = self._memo.get(key)
        if task is None:
            task = asyncio.ensure_future(make())
            self._memo[key] = task
        return asyncio.shield(task)

    def docker_info(self) -> Awaitable[dict[str, Any]]:
        return self._once("docker_info", self.docker.info)

    def processes(self) -> Awaitable[list[ProcessInfo]]:
        return self._once("processes", lambda: asyncio.to_thread(self.host.processes))

    async def find_processes(self, *programs: str) -> list[ProcessInfo]:
        wanted = set(programs)
        return [p for p in await self.processes() if p.program in wanted or p.name in wanted]

    def joined(self) -> JoinRecord | None:
        """This board's finished join, by kedge's record of it. On a joined board what a
        check before joining calls leftovers, taken ports or an expired token are the
        join's own: the daemon's periodic checks must not report them as failures."""
        try:
            record = StateDir(self.host, self.settings.state_dir).load_join()
        except StateCorrupt:
            return None  # leftovers are then reported, and reset is the remedy
        if record is None or record.phase != "joined" or record.node != self.node_name():
            return None
        return record

    def token(self) -> str | None:
        """The join token from `token` or `token_file` (never logged)."""
        if self.settings.token is not None:
            return self.settings.token.get_secret_value()
        if self.settings.token_file is not None:
            # The token file is the operator's input, not part of the board image.
            return read_secret(self.settings.token_file, "token_file")
        return None

    async def aclose(self) -> None:
        for task in self._memo.values():
            task.cancel()
        await asyncio.gather(*self._memo.values(), return_exceptions=True)

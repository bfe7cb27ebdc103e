"""The preflight in the daemon: every check_interval and on demand; the latest full run
is published (retained) and its typed facts feed the health reports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import aiomqtt

from agent.preflight import Preflight, run_preflight
from agent.settings import AgentSettings
from kedge.host import Host
from kedge.wire import CheckReport, ChecksSummary, Topics


class Checker:
    def __init__(self, settings: Callable[[], AgentSettings], host: Host,
                 client: Callable[[], aiomqtt.Client | None], topics: Callable[[], Topics]) -> None:  # fmt: skip
        self._settings = settings
        self.host = host
        self._client = client
        self._topics = topics
        self.latest: Preflight | None = None
        self.now = asyncio.Event()

    def summary(self) -> ChecksSummary | None:
        if self.latest is None:
            return None
        r = self.latest.report
        failing = [c.id for c in r.checks if c.status.blocks]
        return ChecksSummary(ok=r.ok, failing=failing, at=r.started_at)

    def clock_offset(self) -> float | None:
        clock = self.latest.facts.clock if self.latest else None
        return round(clock.offset_s, 3) if clock and clock.offset_s is not None else None

    async def run(self, only: list[str] | None = None) -> CheckReport:
        found = await run_preflight(self._settings(), self.host, only=only or ())
        if not only:
            self.latest = found
            client = self._client()
            if client is not None:
                await self.publish(client)
        return found.report

    async def publish(self, client: aiomqtt.Client) -> None:
        if self.latest is not None:
            with contextlib.suppress(aiomqtt.MqttError):
                await client.publish(self._topics().checks, self.latest.report.model_dump_json(by_alias=True), qos=1,
                                     retain=True)  # fmt: skip

    async def loop(self) -> None:
        while True:
            await self.run()
            self.now.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._settings().check_interval):
                    await self.now.wait()

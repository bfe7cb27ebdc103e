"""Health reports: one every report_interval into the spool, and the spool sent to the
broker in order, each report deleted only on its PUBACK (agent/spool.py keeps them in
memory while the broker answers, on disk when it does not)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import structlog

from agent.daemon.checking import Checker
from agent.daemon.link import BrokerLink
from agent.daemon.troubles import Troubles
from agent.health import HealthCollector
from agent.spool import Spool
from agent.state import StateCorrupt, StateDir

log = structlog.get_logger(__name__)

ACK_TIMEOUT_S = 10.0
FIRST_ATTEMPT_WAIT_S = 15.0


class JoinPhase:
    """The join state's phase, read again only when join.json changes."""

    def __init__(self, state: StateDir) -> None:
        self.state = state
        self._seen: tuple[float, int] | None = None
        self._phase: str | None = None

    def __call__(self) -> str | None:
        path: Path = self.state.path / "join.json"
        try:
            st = path.stat()
            stamp: tuple[float, int] | None = (st.st_mtime, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._seen and stamp is not None:
            return self._phase
        try:
            record = self.state.load_join()
        except StateCorrupt:
            self._phase = "unknown"
        else:
            self._phase = record.phase if record else None
        self._seen = stamp
        return self._phase


class Reporter:
    def __init__(self, collector: HealthCollector, spool: Spool, link: BrokerLink,
                 checker: Checker, state: StateDir, troubles: Troubles,
                 on_report: Callable[[], None]) -> None:  # fmt: skip
        self.collector = collector
        self.spool = spool
        self.link = link
        self.checker = checker
        self.troubles = troubles
        self.on_report = on_report
        self.join_phase = JoinPhase(state)
        self.interval = 10.0
        self.kick = asyncio.Event()
        self.last_report_at = 0.0

    async def report_loop(self) -> None:
        loop = asyncio.get_running_loop()
        # The first report waits for the first connection attempt, so it is live when
        # the broker answers at once.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FIRST_ATTEMPT_WAIT_S):
                await self.link.attempted.wait()
        next_at = loop.time()
        while True:
            try:
                await self.report_once()
            except Exception as exc:  # noqa: BLE001 - one bad report must not end reporting
                self.troubles.note("report", exc)
            next_at += self.interval
            await asyncio.sleep(max(0.0, next_at - loop.time()))

    async def report_once(self) -> None:
        report = await self.collector.collect(
            replayed=self.link.client is None,
            join_phase=self.join_phase(),
            checks=self.checker.summary(),
            clock_offset_s=self.checker.clock_offset(),
            spool_depth=self.spool.depth(),
            spool_dropped=self.spool.dropped(),
            spool_error=self.spool.error,
        )
        self.last_report_at = time.monotonic()
        # Before the report is queued: at steady state the status then reads the same
        # at every report (depth 0), and its file is not rewritten.
        self.on_report()
        # While the link is down the report goes to disk at once: it must survive a
        # restart. Otherwise it waits in memory for its PUBACK.
        dropped = self.spool.put(
            self.link.topics.health, report.to_json().encode(), durable=self.link.client is None
        )
        if dropped:
            log.warning("spool.dropped", count=dropped, total=self.spool.dropped())
        self.kick.set()

    async def send_loop(self) -> None:
        while True:
            await self.kick.wait()
            self.kick.clear()
            while (client := self.link.client) is not None and (item := self.spool.oldest()):
                try:
                    await client.publish(item.topic, item.payload, qos=1, timeout=ACK_TIMEOUT_S)
                except aiomqtt.MqttError as exc:
                    # Not acknowledged in time or the link broke: what waits in memory
                    # must now survive a restart.
                    log.info("spool.send_failed", error=str(exc))
                    self.spool.spill()
                    break
                self.spool.ack(item)

"""The first boot's progress on MQTT once the daemon runs: the first boot started the
daemon and stopped publishing (the board has one client id), so the daemon publishes
firstboot.json, retained, whenever it changes and again after every reconnect."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import structlog

from agent.firstboot_state import RECORD_FILE, load
from kedge.errors import ConfigError
from kedge.wire import Topics

log = structlog.get_logger(__name__)
POLL_S = 2.0


class FirstBootRelay:
    def __init__(
        self,
        state_dir: Path,
        client: Callable[[], aiomqtt.Client | None],
        topics: Callable[[], Topics],
    ) -> None:
        self.path = state_dir / RECORD_FILE
        self.state_dir, self._client, self._topics = state_dir, client, topics
        self.sent: tuple[int, int] | None = None  # (mtime_ns, size) of what went out

    def resend(self) -> None:
        """After a reconnect: the broker may have lost the retained message."""
        self.sent = None

    async def loop(self) -> None:
        while True:
            await self.relay()
            await asyncio.sleep(POLL_S)

    async def relay(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return
        seen = (st.st_mtime_ns, st.st_size)
        client = self._client()
        if seen == self.sent or client is None:
            return
        try:
            record = load(self.state_dir)
        except ConfigError as exc:
            log.warning("firstboot.unreadable", error=str(exc))
            self.sent = seen
            return
        if record is None or record.progress.node != self._topics().node:
            return
        try:
            await client.publish(self._topics().firstboot, record.progress.to_json(), qos=1,
                                 retain=True, timeout=10)  # fmt: skip
        except aiomqtt.MqttError as exc:
            log.info("firstboot.relay_failed", error=str(exc))
            return
        self.sent = seen

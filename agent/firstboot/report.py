"""Every phase of the first boot said three ways: a line on stdout (the journal, under
the unit), firstboot.json (what `kedge-agent status` and the daemon read) and, once the
board has broker credentials, a retained message on kedge/<node>/firstboot. Until the
daemon runs the first boot publishes itself, with the board's one client id; from then
the daemon relays the file (agent/daemon/firstboot_relay.py), so the two never take that
id from each other."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiomqtt
import structlog

from agent.firstboot_state import Record, now, save
from agent.settings import AgentSettings
from kedge import mqtt
from kedge.errors import ConfigError
from kedge.wire import FirstBootProgress, PhaseTime, Topics
from kedge.wire.firstboot import Phase, State

log = structlog.get_logger(__name__)
PUBLISH_TIMEOUT_S = 10.0


async def publish(settings: AgentSettings, progress: FirstBootProgress) -> str | None:
    """One retained message with the progress; why not, as text, when it could not go."""
    try:
        ep = mqtt.endpoint(settings.mqtt, identifier=f"kedge-{progress.node}")
        topic = Topics(settings.mqtt.topic_prefix, progress.node).firstboot
        async with asyncio.timeout(PUBLISH_TIMEOUT_S), mqtt.client(ep) as client:
            await client.publish(topic, progress.to_json(), qos=1, retain=True)
    except (ConfigError, aiomqtt.MqttError, OSError, TimeoutError) as exc:
        return str(exc) or type(exc).__name__
    return None


class Reporter:
    def __init__(self, state_dir: Path, record: Record, emit: Callable[[str], None]) -> None:
        self.state_dir, self.record, self.emit = state_dir, record, emit
        self.settings: AgentSettings | None = None  # with broker credentials: publish
        self.daemon_running = False

    @property
    def progress(self) -> FirstBootProgress:
        return self.record.progress

    async def enter(
        self,
        phase: Phase,
        state: State,
        summary: str,
        *,
        remedy: str = "",
        check: str | None = None,
    ) -> None:
        old, at = self.record.progress, now()
        if (old.phase, old.state, old.summary, old.remedy, old.check) == (
            phase, state, summary, remedy, check):  # fmt: skip
            return  # said already
        timeline = list(old.timeline)
        if phase != old.phase or not timeline:
            if timeline and timeline[-1].finished_at is None:
                timeline[-1] = timeline[-1].model_copy(
                    update={"finished_at": at, "outcome": old.summary}
                )
            timeline.append(PhaseTime(phase=phase, started_at=at))
        attempt = old.attempt + 1 if phase == old.phase and state == "waiting" else 1
        if phase == old.phase and old.state == "waiting" and state == "running":
            attempt = old.attempt
        if state == "done":
            timeline[-1] = timeline[-1].model_copy(update={"finished_at": at, "outcome": summary})
        self.record.progress = old.model_copy(
            update={"phase": phase, "state": state, "since": at, "summary": summary,
                    "remedy": remedy, "check": check, "attempt": attempt,
                    "timeline": timeline[-64:]},
        )  # fmt: skip
        save(self.state_dir, self.record)
        log.info("firstboot.phase", phase=phase, state=state, summary=summary, check=check)
        self.emit(f"firstboot: {phase} ({state}): {summary}")
        if remedy:
            self.emit(f"  remedy: {remedy}")
        await self.publish()

    def outcome(self, summary: str) -> None:
        """How the current phase ended: what its timeline entry says once the next begins."""
        self.record.progress = self.record.progress.model_copy(update={"summary": summary})
        save(self.state_dir, self.record)
        self.emit(f"firstboot: {self.record.progress.phase}: {summary}")

    async def publish(self) -> None:
        if self.settings is None or self.daemon_running or not self.settings.mqtt.host:
            return
        why = await publish(self.settings, self.record.progress)
        if why is not None:
            log.warning("firstboot.unpublished", error=why)

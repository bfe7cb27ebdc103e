"""The health report: psutil, the Docker API and systemd, gathered without blocking
the loop. Expensive facts (edgecore's unit state) are refreshed less often."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from datetime import UTC, datetime

import psutil

from agent import __version__, edgecore_run
from agent.docker_api import DockerClient
from kedge.errors import DockerError
from kedge.host import Host
from kedge.wire import ChecksSummary, DockerState, EdgecoreState, HealthReport, Usage

MB = 1024 * 1024
EDGECORE_REFRESH_S = 60.0


def _usage(total: int, free: int, percent: float) -> Usage:
    return Usage(total_mb=total // MB, free_mb=free // MB, percent=percent)


class HealthCollector:
    def __init__(self, host: Host, docker: DockerClient, node: str) -> None:
        self.host, self.docker, self.node = host, docker, node
        self.started = time.monotonic()
        self.seq = 0
        self._edgecore = EdgecoreState(active=None, state="unknown")
        self._edgecore_at = -EDGECORE_REFRESH_S
        self._docker_root: str | None = None
        self._restarts: int | None = None
        self.allow_remote: list[str] = []  # the daemon keeps it current across reloads
        psutil.cpu_percent(interval=None)  # prime: the first real value covers one interval

    def _system(self) -> dict[str, object]:
        vm, sw = psutil.virtual_memory(), psutil.swap_memory()
        disks = {"/": psutil.disk_usage(str(self.host.path("/")))}
        if self._docker_root:
            with contextlib.suppress(OSError):
                disks[self._docker_root] = psutil.disk_usage(self._docker_root)
        net = psutil.net_io_counters()
        return {
            "cpu_percent": psutil.cpu_percent(interval=None),
            "load": tuple(round(x, 2) for x in os.getloadavg()),
            "memory": _usage(vm.total, vm.available, vm.percent),
            "swap": _usage(sw.total, sw.free, sw.percent),
            "disks": {k: _usage(d.total, d.free, d.percent) for k, d in disks.items()},
            "network": {
                "bytes_sent": net.bytes_sent,
                "bytes_recv": net.bytes_recv,
                "errin": net.errin,
                "errout": net.errout,
            },
            "uptime_s": round(time.time() - psutil.boot_time(), 1),
        }

    def _temperatures(self) -> dict[str, float]:
        temps: dict[str, float] = {}
        base = self.host.path("/sys/class/thermal")
        try:
            zones = sorted(p for p in base.iterdir() if p.name.startswith("thermal_zone"))
        except OSError:
            return temps
        for zone in zones:
            try:
                kind = (zone / "type").read_text().strip() or zone.name
                temps[kind] = int((zone / "temp").read_text().strip()) / 1000
            except (OSError, ValueError):
                continue
        return temps

    async def _docker_state(self) -> DockerState:
        try:
            info = await self.docker.info()
        except DockerError as exc:
            return DockerState(up=False, error=str(exc))
        self._docker_root = info.get("DockerRootDir") or self._docker_root
        return DockerState(
            up=True,
            version=info.get("ServerVersion"),
            containers_running=info.get("ContainersRunning"),
        )

    async def _edgecore_state(self) -> EdgecoreState:
        if time.monotonic() - self._edgecore_at < EDGECORE_REFRESH_S:
            return self._edgecore
        self._edgecore_at = time.monotonic()
        self._edgecore = await self._look_at_edgecore()
        return self._edgecore

    async def _look_at_edgecore(self) -> EdgecoreState:
        found = await edgecore_run.state(self.host, self._restarts)
        if found.restarts is not None:
            self._restarts = found.restarts
        return found

    def refresh_edgecore_soon(self) -> None:
        self._edgecore_at = -EDGECORE_REFRESH_S

    async def collect(
        self, *, replayed: bool, join_phase: str | None, checks: ChecksSummary | None,
        clock_offset_s: float | None, spool_depth: int, spool_dropped: int,
        spool_error: str | None = None,
    ) -> HealthReport:  # fmt: skip
        docker, edgecore = await asyncio.gather(self._docker_state(), self._edgecore_state())
        # Inline, not in a thread: a handful of /proc and /sys reads take well under a
        # millisecond, and the thread hand-off cost more CPU than the reads themselves.
        system, temps = self._system(), self._temperatures()
        self.seq += 1
        return HealthReport(
            node=self.node, seq=self.seq, timestamp=datetime.now(UTC), replayed=replayed,
            agent_version=__version__, agent_uptime_s=round(time.monotonic() - self.started, 1),
            temperature_c=max(temps.values()) if temps else None, temperatures_c=temps,
            docker=docker, edgecore=edgecore, join_phase=join_phase, checks=checks,
            clock_offset_s=clock_offset_s, spool_depth=spool_depth, spool_dropped=spool_dropped,
            spool_error=spool_error, allow_remote=list(self.allow_remote),
            **system,
        )  # fmt: skip

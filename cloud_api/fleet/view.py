"""What the API says about boards: one board's state from what its reports left in the
store, and the fleet table with its filters."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cloud_api.fleet.store import NodeRow, Point, node_row
from cloud_api.models import HealthPoint, NodeState


def state(row: NodeRow, now: float, stale_after_s: float) -> NodeState:
    return _state(row.status, row.status_at, row.last_seen, now, stale_after_s)


def _state(
    status: str | None,
    status_at: float | None,
    last_seen: float | None,
    now: float,
    stale_after_s: float,
) -> NodeState:
    if status == "offline":
        return "offline"
    if status == "online":
        quiet = now - (last_seen or status_at or 0)
        return "stale" if quiet > stale_after_s else "online"
    return "unknown"


def page(raw: Sequence[Sequence[Any]], *, now: float, stale_after_s: float) -> list[dict[str, Any]]:
    """One page of store rows (filtered and paged by SQLite) as NodeSummary's JSON form."""
    return [wire(node_row(r), now, stale_after_s) for r in raw]


def wire(row: NodeRow, now: float, stale_after_s: float) -> dict[str, Any]:
    """One board as the API shows it: NodeSummary's JSON form, built as plain data (a
    page of 500 boards built through pydantic took most of GET /api/v1/nodes' time;
    tests/cloud/test_fleet.py validates these against NodeSummary)."""
    pods = row.pods
    return {
        "node": row.node, "state": state(row, now, stale_after_s), "last_seen": row.last_seen,
        "ready": row.k8s_ready, "not_ready_reason": row.k8s_reason, "join_phase": row.join_phase,
        "agent_version": row.agent_version, "cpu_percent": row.cpu, "memory_percent": row.mem,
        "disk_percent": row.disk, "temperature_c": row.temp,
        "checks": {"ok": row.checks_ok, "counts": row.counts, "failing": row.failing, "at": row.checks_at},
        "allow_remote": row.allow_remote, "firstboot": row.firstboot,
        "clock_ahead_s": row.clock_ahead_s,
        "pods_total": None if pods is None else len(pods),
        "pods_running": None if pods is None else sum(p["phase"] == "Running" for p in pods),
    }  # fmt: skip


def table(rows: Sequence[NodeRow], *, stale_after_s: float, now: float) -> list[dict[str, Any]]:
    """Every board's NodeSummary JSON form (/metrics)."""
    return [wire(row, now, stale_after_s) for row in rows]


def downsample(points: Sequence[Point], step: float) -> list[HealthPoint]:
    """Mean per `step` seconds (0: every point)."""
    if step <= 0:
        return [HealthPoint(t=p.t, cpu_percent=p.cpu, memory_percent=p.mem, disk_percent=p.disk,
                            temperature_c=p.temp) for p in points]  # fmt: skip
    buckets: dict[float, list[Point]] = {}
    for p in points:
        buckets.setdefault(p.t // step * step, []).append(p)

    def mean(values: list[float | None]) -> float | None:
        known = [v for v in values if v is not None]
        return sum(known) / len(known) if known else None

    return [
        HealthPoint(t=t, cpu_percent=mean([p.cpu for p in ps]), memory_percent=mean([p.mem for p in ps]),
                    disk_percent=mean([p.disk for p in ps]), temperature_c=mean([p.temp for p in ps]))
        for t, ps in sorted(buckets.items())
    ]  # fmt: skip

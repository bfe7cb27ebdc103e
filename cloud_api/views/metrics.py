"""/metrics in Prometheus' text format (version 0.0.4): the fleet by state and readiness,
failing checks by id, the ingest's counters, and per-board gauges labelled by node."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from aiohttp import web

from cloud_api.fleet.view import table
from cloud_api.routing import FLEET, SETTINGS, Route


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(out: list[str], name: str, kind: str, help_text: str) -> None:
    out += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


async def metrics(request: web.Request) -> web.Response:
    fleet = request.app[FLEET]
    rows = await asyncio.to_thread(fleet.store.nodes)
    nodes = table(rows, stale_after_s=request.app[SETTINGS].fleet.stale_after_s, now=time.time())
    out: list[str] = []
    states = Counter(n["state"] for n in nodes)
    _family(out, "kedge_nodes", "gauge", "Boards by state (online, stale, offline, unknown).")
    out += [
        f'kedge_nodes{{state="{s}"}} {states.get(s, 0)}'
        for s in ("online", "stale", "offline", "unknown")
    ]
    _family(out, "kedge_nodes_ready", "gauge", "Edge nodes Ready in Kubernetes.")
    out.append(f"kedge_nodes_ready {sum(1 for n in nodes if n['ready'])}")
    failing = Counter(check for n in nodes for check in n["checks"]["failing"])
    _family(
        out, "kedge_checks_failing", "gauge", "Boards whose latest check report fails this check."
    )
    out += [f'kedge_checks_failing{{check="{_label(c)}"}} {k}' for c, k in sorted(failing.items())]
    ingest = fleet.ingest
    if ingest is not None:
        s = ingest.stats
        _family(
            out, "kedge_ingest_messages_total", "counter", "MQTT messages received from boards."
        )
        out.append(f"kedge_ingest_messages_total {s.received}")
        _family(
            out, "kedge_ingest_written_total", "counter", "Reports committed to the fleet store."
        )
        out.append(f"kedge_ingest_written_total {s.written}")
        _family(out, "kedge_ingest_bad_payloads_total", "counter", "Messages skipped, by reason.")
        out += [
            f'kedge_ingest_bad_payloads_total{{reason="{_label(r)}"}} {k}'
            for r, k in sorted(s.bad.items())
        ]
        _family(out, "kedge_ingest_connected", "gauge", "1 while the broker link is up.")
        out.append(f"kedge_ingest_connected {int(s.connected)}")
        _family(out, "kedge_ingest_down_seconds", "gauge", "Seconds the broker link is down.")
        out.append(f"kedge_ingest_down_seconds {s.down_for(time.monotonic()):.1f}")
        _family(out, "kedge_ingest_crashes_total", "counter", "Ingest restarts after a crash.")
        out.append(f"kedge_ingest_crashes_total {s.crashes}")
    for metric, help_text, attr in (
        ("kedge_node_cpu_percent", "A board's CPU use in its latest report.", "cpu_percent"),
        (
            "kedge_node_memory_percent",
            "A board's memory use in its latest report.",
            "memory_percent",
        ),
        (
            "kedge_node_temperature_celsius",
            "A board's hottest sensor in its latest report.",
            "temperature_c",
        ),
    ):
        _family(out, metric, "gauge", help_text)
        for n in nodes:
            value = n[attr]
            if value is not None:
                out.append(f'{metric}{{node="{_label(n["node"])}"}} {value}')
    return web.Response(body=("\n".join(out) + "\n").encode(),
                        headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})  # fmt: skip


ROUTES = (
    Route("GET", "/metrics", metrics, "Prometheus metrics: the fleet, its checks and the ingest",
          admin=True, content_type="text/plain"),
)  # fmt: skip

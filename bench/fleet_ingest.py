"""Benchmark: the cloud API's MQTT ingest against the broker's own delivery ceiling,
measured side by side in one run.

One mosquitto with the shipped configuration (packaging/mosquitto-kedge.conf). N
simulated boards (publisher processes using the agent's own HealthReport, QoS 1, each
board a distinct node) send `rounds` reports each, as fast as the broker takes them:
  1. to a plain paho subscriber that only counts (the broker's delivery ceiling here);
  2. to `kedge-cloud-api serve` (validation, SQLite, acknowledgement after commit).
The two alternate, `--repeat` times each (on a small machine one run's rate swings with
how the publishers happen to be scheduled); each gets a fresh broker session or a fresh
API and database. Reported: the median messages/s delivered to each and every run's
figure, messages lost over all runs (must be 0 at QoS 1), the ratio of the medians
ingest / plain (target >= 0.5), and GET /api/v1/nodes latency (p50/p99 over many calls)
with N boards known — the default page (500) and the whole table.

    .venv/bin/python -m bench.fleet_ingest [--boards 1000] [--rounds 30] [--publishers 4] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import multiprocessing
import signal
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from cloud_api.broker.setup import LIMITS
from cloud_api.fleet.ingest import LEGACY_GROUP
from cloud_api.fleet.service import client_id
from cloud_api.settings import FleetSettings
from kedge import paho_tables
from tests.harness.cloud_api import start
from tests.harness.fleet import health
from tests.harness.http import call_json
from tests.harness.mosquitto import Mosquitto
from tests.harness.wait import wait_for

# The baseline subscriber decodes with the same shared property tables as the API does:
# the ratio then measures the ingest's own work, not a cost only one side was spared.
paho_tables.install()


def publish(port: int, nodes: list[str], rounds: int, start: float, ready: Any) -> None:
    """One publisher process: every board in `nodes`, `rounds` reports each, QoS 1."""
    template = health("NODE", at=datetime(2026, 1, 1, tzinfo=UTC)).to_json()
    stamp = template.split('"timestamp":"', 1)[1].split('"', 1)[0]
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{nodes[0]}", protocol=paho.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.connect("127.0.0.1", port, 60)
    c.loop_start()
    ready.set()
    last = None
    for r in range(rounds):
        when = (
            (datetime.fromtimestamp(start, UTC) + timedelta(seconds=r))
            .isoformat()
            .replace("+00:00", "Z")
        )
        for node in nodes:
            body = template.replace('"node":"NODE"', f'"node":"{node}"').replace(stamp, when)
            last = c.publish(f"kedge/{node}/health", body, qos=1)
    if last is not None:
        last.wait_for_publish(timeout=600)
    c.loop_stop()
    c.disconnect()


class Counter:
    """The baseline: a plain QoS 1 subscriber that only counts."""

    def __init__(self, port: int, identifier: str) -> None:
        self.count, self.first, self.last = 0, 0.0, 0.0
        self._lock = threading.Lock()
        self.c = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=identifier, protocol=paho.MQTTv5
        )
        ready = threading.Event()
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.on_message = self._message
        self.c.connect("127.0.0.1", port, 60)
        self.c.subscribe("kedge/+/health", qos=1)
        self.c.loop_start()
        if not ready.wait(20):
            raise TimeoutError("plain subscriber did not subscribe")

    def _message(self, *_: object) -> None:
        now = time.monotonic()
        with self._lock:
            self.count += 1
            self.first = self.first or now
            self.last = now

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


def run_publishers(port: int, boards: int, rounds: int, publishers: int, base: float) -> float:
    names = [f"rk-{i:05d}" for i in range(boards)]
    chunks = [names[i::publishers] for i in range(publishers)]
    ctx = multiprocessing.get_context("spawn")
    events = [ctx.Event() for _ in chunks]
    procs = [
        ctx.Process(target=publish, args=(port, chunk, rounds, base, ev))
        for chunk, ev in zip(chunks, events, strict=True)
    ]
    for p in procs:
        p.start()
    for ev in events:
        ev.wait(60)
    started = time.monotonic()
    for p in procs:
        p.join(1800)
    return started


def plain(broker: Mosquitto, boards: int, rounds: int, publishers: int) -> tuple[float, int]:
    counter = Counter(broker.port, f"plain-{time.monotonic_ns()}")
    total = boards * rounds
    started = run_publishers(broker.port, boards, rounds, publishers, time.time() - 86400)
    with contextlib.suppress(TimeoutError):  # what did not arrive is the loss reported
        wait_for(
            lambda: counter.count >= total, timeout=600, what="the plain subscriber's messages"
        )
    counter.close()
    elapsed = max(counter.last - started, 1e-6)
    return counter.count / elapsed, total - counter.count


def ingest(
    broker: Mosquitto, workdir: Path, boards: int, rounds: int, publishers: int, *, latency: bool
) -> tuple[float, int, dict[str, float]]:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "cloud-api.toml"
    config.write_text(f'log_level = "warning"\n[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n')
    api = start(workdir / "state", "--config", str(config))
    db = workdir / "state" / "fleet.db"
    total = boards * rounds

    def stored() -> int:
        with sqlite3.connect(db, timeout=30) as c:
            return int(c.execute("SELECT count(*) FROM health").fetchone()[0])

    try:
        started = run_publishers(broker.port, boards, rounds, publishers, time.time() - 2 * 86400)
        done_at = started
        deadline = time.monotonic() + 900
        seen = -1
        while time.monotonic() < deadline:
            n = stored()
            if n != seen:
                seen, done_at = n, time.monotonic()
            if n >= total:
                break
            time.sleep(
                0.2
            )  # sampling the database for the benchmark's clock, not a wait for a condition in a test
        rate = seen / max(done_at - started, 1e-6)
        return rate, total - seen, nodes_latency(api.url, api.token) if latency else {}
    finally:
        api.proc.send_signal(signal.SIGTERM)
        api.proc.wait(60)
        forget_session(broker.port, client_id(FleetSettings().share_group or LEGACY_GROUP))


def forget_session(port: int, identifier: str) -> None:
    """End the API's persistent session on the broker, so that the next run's baseline is
    not also queued for an API that is gone (a clean start with no expiry discards it)."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=identifier, protocol=paho.MQTTv5)
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 0
    c.connect("127.0.0.1", port, 60, clean_start=True, properties=props)
    c.loop_start()
    try:
        wait_for(c.is_connected, timeout=20, what="a clean session for the API's client id")
    finally:
        c.disconnect()
        c.loop_stop()


def nodes_latency(url: str, token: str, calls: int = 100) -> dict[str, float]:
    out: dict[str, float] = {}
    # As timeit does: this process's own garbage collections (it holds the publishers'
    # and the baseline's leftovers) must not be counted as the API's latency.
    gc.disable()
    try:
        return _latencies(url, token, calls, out)
    finally:
        gc.enable()


def _latencies(url: str, token: str, calls: int, out: dict[str, float]) -> dict[str, float]:
    for label, path in (("page", "/api/v1/nodes"), ("failing", "/api/v1/nodes?failing=clock"),
                        ("all", "/api/v1/nodes?limit=10000")):  # fmt: skip
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            status, _, _ = call_json("GET", url + path, token=token, timeout=30)
            times.append((time.perf_counter() - t0) * 1000)
            assert status == 200
        times.sort()
        out[f"{label}_p50_ms"] = round(statistics.median(times), 1)
        out[f"{label}_p99_ms"] = round(times[int(0.99 * (len(times) - 1))], 1)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--publishers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    # broker init's limits, on a plain listener: the publishers speak for many boards at
    # once, which per-board identities would (rightly) refuse.
    lines = tuple(ln for ln in LIMITS.splitlines() if ln and not ln.startswith("#"))
    plain_rates: list[float] = []
    ingest_rates: list[float] = []
    plain_lost = ingest_lost = 0
    latency: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="kedge-bench-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto", extra=lines).start()
        try:
            for run in range(args.repeat):
                rate, lost = plain(broker, args.boards, args.rounds, args.publishers)
                plain_rates.append(rate)
                plain_lost += lost
                last = run == args.repeat - 1
                rate, lost, measured = ingest(broker, work / f"run-{run}", args.boards, args.rounds,
                                              args.publishers, latency=last)  # fmt: skip
                ingest_rates.append(rate)
                ingest_lost += lost
                latency |= measured
        finally:
            broker.stop()
    plain_rate, ingest_rate = statistics.median(plain_rates), statistics.median(ingest_rates)
    report = {
        "boards": args.boards, "messages": args.boards * args.rounds, "publishers": args.publishers,
        "runs": args.repeat,
        "plain_msgs_per_s": round(plain_rate), "plain_runs": [round(r) for r in plain_rates],
        "plain_lost": plain_lost,
        "ingest_msgs_per_s": round(ingest_rate), "ingest_runs": [round(r) for r in ingest_rates],
        "ingest_lost": ingest_lost,
        "ratio_ingest_to_plain": round(ingest_rate / plain_rate, 2) if plain_rate else None,
        **latency,
    }  # fmt: skip
    print(json.dumps(report, indent=2))
    ok = (
        ingest_lost == 0
        and report["ratio_ingest_to_plain"] is not None
        and report["ratio_ingest_to_plain"] >= 0.5
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

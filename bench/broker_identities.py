"""What per-board broker identities cost: reports from many boards, each its own client,
through a broker set up by `kedge-cloud-api broker init` (TLS, dynamic security, one
identity and ACL per board) against the same boards on a plain anonymous broker with the
same limits, side by side; and how long the cloud API takes to make one identity (what
an enrollment adds), against a bare TLS connect-and-disconnect as the baseline.

    python -m bench.broker_identities [--boards 200] [--reports 20] [--repeat 3]

Prints JSON: the two report rates (all reports acknowledged and received), their ratio,
and the identity creation time per board against the baseline round trip (medians).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from cloud_api.broker.setup import LIMITS
from kedge import paho_tables
from tests.harness.mosquitto import Auth, Mosquitto
from tests.harness.wait import wait_for

paho_tables.install()


def client(port: int, client_id: str, auth: Auth | None, *, wait: bool = True) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    if auth is not None:
        c.username_pw_set(auth.username, auth.password)
        if auth.ca is not None:
            c.tls_set(ca_certs=str(auth.ca))
    c.max_inflight_messages_set(100)
    c.connect("127.0.0.1", port, 60)
    c.loop_start()
    if wait:
        wait_for(c.is_connected, timeout=30, what=f"{client_id} connected")
    return c


def reports(
    broker: Mosquitto, auths: dict[str, Auth | None], reader: Auth | None, count: int
) -> float:
    """Every board publishes `count` reports at QoS 1; reports/s until all arrived."""
    boards = {
        node: client(broker.port, f"kedge-{node}", auth, wait=False) for node, auth in auths.items()
    }
    wait_for(
        lambda: all(c.is_connected() for c in boards.values()),
        timeout=120,
        what="every board connected",
    )
    got = 0
    lock = threading.Lock()
    done = threading.Event()
    total = len(boards) * count

    def on_message(*_: object) -> None:
        nonlocal got
        with lock:
            got += 1
            if got == total:
                done.set()

    sub = client(broker.port, f"reader-{time.monotonic_ns()}", reader)
    sub.on_message = on_message
    subscribed = threading.Event()
    sub.on_subscribe = lambda *a: subscribed.set()
    sub.subscribe("kedge/+/health", qos=1)
    subscribed.wait(30)
    payload = b'{"cpu_percent": 5.0}' * 40  # a report's size, about 800 bytes
    started = time.perf_counter()
    infos = [c.publish(f"kedge/{node}/health", payload, qos=1)
             for _ in range(count) for node, c in boards.items()]  # fmt: skip
    for info in infos:
        info.wait_for_publish(60)
    if not done.wait(120):
        raise RuntimeError(f"only {got} of {total} reports arrived")
    elapsed = time.perf_counter() - started
    everyone = [*boards.values(), sub]
    for c in everyone:  # all first: each loop then ends at once instead of at its next wake-up
        c.disconnect()
    for c in everyone:
        c.loop_stop()
    return total / elapsed


def identity_ms(broker: Mosquitto, n: int) -> tuple[float, float]:
    """Median ms to make one board identity, and for the same exchange (connect over TLS,
    one control request answered, disconnect) asking only for a setting: the baseline."""
    assert broker.identities is not None
    admin = broker.identities.admin()
    made, asked = [], []
    for i in range(n):  # alternated
        t = time.perf_counter()
        asyncio.run(admin.put_board(f"made-{i}"))
        made.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        asyncio.run(admin.run([{"command": "getDefaultACLAccess"}]))
        asked.append((time.perf_counter() - t) * 1000)
    return statistics.median(made), statistics.median(asked)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--boards", type=int, default=200)
    parser.add_argument("--reports", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    limits = tuple(ln for ln in LIMITS.splitlines() if ln and not ln.startswith("#"))
    nodes = [f"bench-{i}" for i in range(args.boards)]
    plain_rates, secured_rates = [], []
    with tempfile.TemporaryDirectory(prefix="kedge-bench-") as tmp:
        work = Path(tmp)
        plain = Mosquitto(work / "plain", extra=limits).start()
        secured = Mosquitto(work / "secured", state_dir=work / "state").start()
        try:
            assert secured.identities is not None
            auths = {node: secured.identities.board(node) for node in nodes}
            reader = secured.identities.cloud
            for _ in range(args.repeat):  # alternated, so drift hits both alike
                plain_rates.append(reports(plain, dict.fromkeys(nodes), None, args.reports))
                secured_rates.append(reports(secured, dict(auths), reader, args.reports))
            made_ms, rtt_ms = identity_ms(secured, 50)
        finally:
            plain.stop()
            secured.stop()
    p, s = statistics.median(plain_rates), statistics.median(secured_rates)
    print(json.dumps({
        "boards": args.boards, "reports_per_board": args.reports, "runs": args.repeat,
        "plain_reports_per_s": round(p), "plain_runs": [round(r) for r in plain_rates],
        "identities_tls_reports_per_s": round(s), "identities_runs": [round(r) for r in secured_rates],
        "ratio_identities_to_plain": round(s / p, 2),
        "identity_create_ms": round(made_ms, 1), "control_round_trip_ms": round(rtt_ms, 1),
        "ratio_identity_to_round_trip": round(made_ms / rtt_ms, 2),
    }, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

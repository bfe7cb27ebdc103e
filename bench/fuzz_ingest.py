"""The fuzz tier's long run: 10,000 deliveries generated from the kedge.wire models and
mutated as a hostile board would send them (tests/harness/wire_fuzz.py), published by a
board with its own identity through a real mosquitto (as `broker init` sets it up) into
a real `kedge-cloud-api serve`; every API answer read strictly every 500 messages. At the
end: the ingest alive and never restarted, an honest report stored, the bad payloads by
reason, and how long it took.

    .venv/bin/python -m bench.fuzz_ingest [--examples 10000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.harness.fleet import health
from tests.harness.fleet_api import board_for, ingest_connected, serve, stop
from tests.harness.http import get_text
from tests.harness.mosquitto import Mosquitto
from tests.harness.wait import wait_for
from tests.harness.wire_fuzz import fuzz_ingest, strict_answers


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--examples", type=int, default=10_000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="kedge-fuzz-") as tmp:
        work = Path(tmp)
        broker = Mosquitto(work / "mosquitto", state_dir=work / "state").start()
        api = serve(work, broker)
        fuzzer = honest = None
        try:
            ingest_connected(api)
            fuzzer, honest = board_for(broker, "rk3000-1"), board_for(broker, "rk3000-2")
            began = time.monotonic()
            sent = fuzz_ingest(api.url, api.token, fuzzer, args.examples, check_every=500)
            took = time.monotonic() - began
            honest.send("health", health(honest.node, cpu=42.0))
            wait_for(
                lambda: (
                    api.call("GET", f"/api/v1/nodes/{honest.node}", token=api.token)[2].get(
                        "cpu_percent"
                    )
                    == 42.0
                ),
                timeout=60,
                what="the honest report",
            )
            strict_answers(api.url, api.token, fuzzer.node)
            _, text = get_text(api.url + "/metrics", api.token)
            lines = [ln for ln in text.splitlines() if ln.startswith("kedge_ingest_")]
            print(
                f"{args.examples} examples, {sent} messages in {took:.0f} s ({sent / took:.0f}/s)"
            )
            print("\n".join(lines))
            ok = "kedge_ingest_connected 1" in lines and "kedge_ingest_crashes_total 0" in lines
            print(
                "ingest alive, never restarted; honest report stored; every answer strict JSON"
                if ok
                else "THE INGEST DID NOT SURVIVE"
            )
            return 0 if ok else 1
        finally:
            for b in (fuzzer, honest):
                if b is not None:
                    b.close()
            stop(api)
            broker.stop()


if __name__ == "__main__":
    sys.exit(main())

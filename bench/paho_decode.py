"""Benchmark: decoding an MQTT 5 PUBLISH (a board's health report) with paho's own
Properties and with kedge.paho_tables' shared tables, side by side in one process.

    .venv/bin/python -m bench.paho_decode [--messages 20000]
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time

from paho.mqtt import _packet, properties
from paho.mqtt.enums import MQTTProtocolVersion

from kedge import paho_tables
from tests.harness.fleet import health


def publish_body(node: str) -> bytes:
    topic = f"kedge/{node}/health".encode()
    payload = health(node).to_json().encode()
    return struct.pack("!H", len(topic)) + topic + struct.pack("!H", 7) + b"\x00" + payload


def per_message_us(body: bytes, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        _packet.decode_publish(0x32, body, MQTTProtocolVersion.MQTTv5)
    return (time.perf_counter() - start) / n * 1e6


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    args = parser.parse_args(argv)
    body = publish_body("rk3000-1")
    _packet.Properties = properties.Properties  # type: ignore[attr-defined]
    paho_us = per_message_us(body, args.messages)
    if not paho_tables.install():
        print("paho is not the version kedge.paho_tables was written for", file=sys.stderr)
        return 1
    shared_us = per_message_us(body, args.messages)
    print(json.dumps({"messages": args.messages, "paho_us_per_publish": round(paho_us, 2),
                      "shared_tables_us_per_publish": round(shared_us, 2),
                      "ratio_shared_to_paho": round(shared_us / paho_us, 3)}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""What the CRI runtime checks cost on a board with a real containerd (Debian's 1.6):
the five checks a v1.23.1 board runs on its runtime (cri, runtime-cgroup,
sandbox-image, runtime-images, cni) through the check engine, against the bare CRI calls
they need (Version, Status, two ImageStatus) on one connection each, side by side.

    python -m bench.cri_checks [--repeat 30]

Prints JSON: medians in ms and their ratio (what kedge adds over asking the runtime).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from agent.preflight import run_preflight
from agent.settings import load_settings
from kedge.cri import CriClient
from kedge.host import Host
from tests.harness.board import Board
from tests.harness.containerd import Containerd, config_v2

ONLY = ["cri", "runtime-cgroup", "sandbox-image", "runtime-images", "cni"]


async def bare(endpoint: str) -> float:
    start = time.perf_counter()
    client = CriClient(endpoint)
    await client.version()
    await client.conditions()
    await client.image_id("kubeedge/pause:3.6")
    await client.image_id("kubeedge/installation-package:v1.23.1")
    return (time.perf_counter() - start) * 1000


async def checks(board: Board) -> float:
    settings = load_settings(board.config_path)
    start = time.perf_counter()
    report = (await run_preflight(settings, Host(board.root), only=ONLY)).report
    elapsed = (time.perf_counter() - start) * 1000
    assert {c.id for c in report.checks} == set(ONLY), report
    return elapsed


async def measure(board: Board, endpoint: str, repeat: int) -> dict[str, float]:
    a, b = [], []
    for _ in range(repeat):  # alternated, so drift hits both alike
        a.append(await checks(board))
        b.append(await bare(endpoint))
    engine, raw = statistics.median(a), statistics.median(b)
    return {
        "checks_ms": round(engine, 2),
        "bare_cri_ms": round(raw, 2),
        "ratio": round(engine / raw, 2),
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench.cri_checks")
    p.add_argument("--repeat", type=int, default=30)
    args = p.parse_args(argv)
    if shutil.which("containerd") is None:
        print("needs containerd (apt install containerd)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="kedge-bench-") as tmp:
        board = Board.create(Path(tmp))
        board.install_systemd()
        c = Containerd(board, Path(tmp) / "containerd").start(
            config_v2(
                Path(tmp) / "containerd", systemd_cgroup=False, sandbox_image="kubeedge/pause:3.6"
            )
        )
        try:
            board.configure({"kubeedge_version": "v1.23.1", "runtime": "containerd",
                             "remote_runtime_endpoint": c.endpoint, "cgroup_driver": "cgroupfs"})  # fmt: skip
            result = asyncio.run(measure(board, c.endpoint, args.repeat))
        finally:
            c.stop()
    print(json.dumps({"repeat": args.repeat, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

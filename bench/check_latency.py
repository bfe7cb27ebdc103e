"""Benchmark: a full `kedge-agent check` against each check run alone, side by side.

Everything real is up (dockerd with a registry mirror, SNTP, the cloudcore simulator) on
a fixture board on which all thirteen checks pass. Rounds interleave the full run and
every single-check run, so machine noise hits them alike. Reported: medians of the
in-process engine time and of the whole CLI process (Python start-up included), and
the ratio of the full run to its slowest single check. Targets: full CLI run < 2 s,
ratio <= 1.2.

    make bench            (or: .venv/bin/python -m bench.check_latency --rounds 7)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent.checks import ORDER
from agent.preflight import run_preflight
from agent.settings import load_settings
from kedge.host import Host
from kedge.kubeedge import join_images
from kedge.logs import configure_logging
from tests.harness.board import Board
from tests.harness.dockerd import Dockerd, seed_registry
from tests.harness.registry import start_registry
from tests.harness.sntp import SntpServer
from tests.kubeedge_sim.cloudcore import CloudcoreSim
from tests.kubeedge_sim.pki import CloudcorePKI

AGENT = str(Path(sys.executable).with_name("kedge-agent"))


def engine_ms(board: Board, only: list[str]) -> float:
    settings = load_settings(board.config_path)
    t0 = time.perf_counter()
    report = asyncio.run(run_preflight(settings, Host(board.root), only=only)).report
    elapsed = (time.perf_counter() - t0) * 1000
    if not report.ok:
        bad = [c.id for c in report.checks if c.status.blocks]
        raise SystemExit(f"benchmark board is not clean: {bad}")
    return elapsed


def process_ms(board: Board, only: list[str]) -> float:
    argv = [AGENT, "check", "--root", str(board.root), "--config", str(board.config_path)]
    if only:
        argv += ["--only", ",".join(only)]
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=60)
    return (time.perf_counter() - t0) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    configure_logging("warning")
    if os.geteuid() != 0:
        print("the benchmark starts a private dockerd: run it as root", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="kedge-bench-"))
    registry = start_registry(work / "registry")
    docker = Dockerd("systemd", [registry.url])
    try:
        docker.start()
        images = join_images("v1.13.0")
        seed_registry(docker, registry.address, images)
        for ref in images:
            docker.pull(ref)
        pki = CloudcorePKI.create(["127.0.0.1"])
        with SntpServer() as ntp, CloudcoreSim(pki) as cc:
            board = Board.create(work / "board")
            board.install_keadm("v1.13.0")
            board.configure({
                "docker_host": f"unix://{docker.socket}", "ntp_servers": [ntp.address],
                "cloudcore": cc.cloudcore, "cloudcore_cert_port": cc.cert_port,
                "token": pki.token(), "thresholds": {"docker_min_free_mb": 1},
            })  # fmt: skip
            os.environ.pop("KEDGE_AGENT_CONFIG", None)
            cases: list[list[str]] = [[], *([c] for c in ORDER)]
            engine: dict[str, list[float]] = {"full" if not c else c[0]: [] for c in cases}
            proc: dict[str, list[float]] = {k: [] for k in engine}
            engine_ms(board, [])  # warm caches (imports, docker, page cache)
            for _ in range(args.rounds):
                for only in cases:
                    key = "full" if not only else only[0]
                    engine[key].append(engine_ms(board, only))
                    proc[key].append(process_ms(board, only))
    finally:
        docker.stop()
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)

    med_e = {k: statistics.median(v) for k, v in engine.items()}
    med_p = {k: statistics.median(v) for k, v in proc.items()}
    print(f"{'case':<18}{'engine ms':>11}{'process ms':>12}   ({args.rounds} rounds, medians)")
    for key in engine:
        print(f"{key:<18}{med_e[key]:>11.1f}{med_p[key]:>12.1f}")
    slowest = max(ORDER, key=lambda c: med_e[c])
    slowest_p = max(ORDER, key=lambda c: med_p[c])
    ratio_e = med_e["full"] / med_e[slowest]
    ratio_p = med_p["full"] / med_p[slowest_p]
    print(f"\nslowest single check: {slowest} ({med_e[slowest]:.1f} ms engine), "
          f"{slowest_p} ({med_p[slowest_p]:.1f} ms process)")  # fmt: skip
    print(f"full / slowest single: {ratio_e:.2f} (engine), {ratio_p:.2f} (process); target <= 1.2")
    print(f"full CLI run: {med_p['full']:.0f} ms; target < 2000 ms")
    ok = ratio_e <= 1.2 and ratio_p <= 1.2 and med_p["full"] < 2000
    print("PASS" if ok else "OVER TARGET")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

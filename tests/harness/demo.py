"""`make demo`: a throwaway dockerd + registry mirror, two fixture boards, and
`kedge-agent check` on each, so you see passes, warnings and failures for real."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from agent.kubeedge import join_images
from tests.harness.board import Board
from tests.harness.dockerd import Dockerd, seed_registry
from tests.harness.registry import start_registry
from tests.harness.sntp import SntpServer
from tests.kubeedge_sim.cloudcore import CloudcoreSim
from tests.kubeedge_sim.pki import CloudcorePKI

AGENT = str(Path(sys.executable).with_name("kedge-agent"))


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def run_check(board: Board, *extra: str) -> int:
    argv = [AGENT, "check", "--root", str(board.root), "--config", str(board.config_path), *extra]
    print(
        "$ kedge-agent check --root", board.root, "--config", board.config_path, *extra, flush=True
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEDGE_AGENT_")}
    return subprocess.run(argv, env=env, timeout=120, check=False).returncode


def main() -> int:
    if os.geteuid() != 0:
        print("make demo needs root (it starts a private dockerd)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="kedge-demo-"))
    images = join_images("v1.13.0")
    banner("starting a docker registry (the Docker Hub mirror) and a private dockerd")
    registry = start_registry(work / "registry")
    docker = Dockerd("systemd", [registry.url])
    try:
        docker.start()
        seed_registry(docker, registry.address, images)
        for ref in images[1:]:  # leave installation-package out: the images check will say so
            docker.pull(ref)
        print(f"dockerd on {docker.socket} (cgroup driver systemd), registry {registry.url}")
        pki = CloudcorePKI.create(["127.0.0.1"])
        with (
            SntpServer(offset_s=0.0) as ntp_ok,
            SntpServer(offset_s=-90.0) as ntp_skewed,
            CloudcoreSim(pki) as cc,
        ):
            common = {
                "docker_host": f"unix://{docker.socket}",
                "cloudcore": cc.cloudcore,
                "cloudcore_cert_port": cc.cert_port,
                "thresholds": {"docker_min_free_mb": 1},
            }
            banner("board 1: a board with the seed guide's problems")
            bad = Board.create(work / "board-1", hostname="RK3000_Board1")
            bad.install_keadm("v1.12.1")
            bad.mkdir("/etc/kubeedge/config")
            bad.write("/etc/kubeedge/config/edgecore.yaml", "# left by an earlier join\n")
            bad.write("/etc/rancher/k3s/config.yaml", "# k3s was here\n")
            bad.configure(
                common
                | {
                    "cgroup_driver": "cgroupfs",
                    "ntp_servers": [ntp_skewed.address],
                    "token": CloudcorePKI.create(["127.0.0.1"]).token(),
                }
            )
            run_check(bad)

            banner("board 2: the same checks on a board that is ready (after `docker pull`)")
            docker.pull(images[0])
            good = Board.create(work / "board-2", hostname="rk3000-board2")
            good.install_keadm("v1.13.0")
            good.configure(common | {"ntp_servers": [ntp_ok.address], "token": pki.token()})
            rc = run_check(good)
            banner("machine-readable: the same report as JSON (first lines)")
            out = subprocess.run(
                [AGENT, "check", "--json", "--only", "clock", "--root", str(good.root),
                 "--config", str(good.config_path)],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            print("\n".join(out.stdout.splitlines()[:14]) + "\n  …")
    finally:
        docker.stop()
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)
    banner(f"done: board 2 check exited {rc}")
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

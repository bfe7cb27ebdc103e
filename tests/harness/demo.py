"""`make demo`: the field story's setup. On a simulated single-master cluster (its own
network namespace), `kedge-cloud-api init` installs cloudcore and makes a secret; one
fixture board with the guide's problems enrolls with it and is taken from `kedge-agent
check` through `fix` and `join` to a verified edge node, then `reset`.

Real parts: the cloud API process, a private dockerd (reading the board's
/etc/docker/daemon.json and restarted through the board's systemctl) with a loopback
registry as its Docker Hub mirror, and an SNTP server. Simulated (they cannot run
here): keadm, kubectl and the cluster, cloudcore (a process serving its ports),
edgecore, systemctl/journalctl, chronyc — see tests/kubeedge_sim/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from kedge.kubeedge import join_images
from tests.harness.board import Board
from tests.harness.dockerd import Dockerd, seed_registry
from tests.harness.master import MASTER_IP, Master, master
from tests.harness.registry import start_registry
from tests.harness.sntp import SntpServer
from tests.kubeedge_sim.chronyc import OFFSET_FILE

AGENT = str(Path(sys.executable).with_name("kedge-agent"))


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def agent(board: Board, *args: str) -> int:
    argv = [AGENT, *args, "--root", str(board.root), "--config", str(board.config_path)]
    print(f"$ kedge-agent {' '.join(args)}", flush=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEDGE_AGENT_")}
    return subprocess.run(argv, env=env, timeout=600, check=False).returncode


def cloud(m: Master, *args: str, capture: bool = False) -> str:
    print(f"$ kedge-cloud-api {' '.join(args)}", flush=True)
    out = m.cli(*args, timeout=600, capture=capture)
    if capture:
        print(out.stderr, end="", flush=True)  # the hint; the secret itself is the return value
    return out.stdout.strip() if capture else ""


def prepare(work: Path, mirror_url: str) -> tuple[Board, Dockerd]:
    board = Board.create(work / "board", hostname="rk3000-board1")
    board.install_keadm("v1.13.0")
    board.install_systemd()
    board.install_sim("chronyc", "tests.kubeedge_sim.chronyc", "/usr/bin")
    board.write(OFFSET_FILE, "-95\n")  # the board's clock runs 95 s fast
    board.mkdir("/etc/kubeedge/config")  # an earlier keadm join died half-way
    daemon_json = {"registry-mirrors": [mirror_url], "log-level": "warn"}
    board.write("/etc/docker/daemon.json", json.dumps(daemon_json, indent=4) + "\n")
    docker = Dockerd(config_file=board.path("/etc/docker/daemon.json")).start()
    assert docker.proc is not None
    unit = {
        "exec": docker.argv,
        "pidfile": str(docker.workdir / "dockerd.pid"),
        "pid": docker.proc.pid,
    }
    board.write("/var/lib/kedge-sim/systemd.json", json.dumps({"units": {"docker.service": unit}}))
    return board, docker


def main() -> int:
    if os.geteuid() != 0:
        print("make demo needs root (it starts a private dockerd)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="kedge-demo-"))
    banner("setting up: a docker registry as Docker Hub's mirror, a private dockerd, the master")
    registry = start_registry(work / "registry")
    seeder = Dockerd().start()
    board: Board | None = None
    docker: Dockerd | None = None
    rc = 1
    try:
        seed_registry(seeder, registry.address, join_images("v1.13.0"))
        seeder.stop()
        board, docker = prepare(work, registry.url)
        with SntpServer(offset_file=board.path(OFFSET_FILE)) as ntp, master(work) as m:
            m.start()
            board.configure(
                {
                    "docker_host": docker.socket,
                    "ntp_servers": [ntp.address],
                    "cgroup_driver": "systemd",
                    "join_settle_s": 3,
                    "thresholds": {"docker_min_free_mb": 1},
                }
            )
            print(
                f"board root {board.root}\ndockerd {docker.socket}\nmaster {MASTER_IP} (single tainted "
                f"control plane, Kubernetes v1.23.17); cloud API {m.url}"
            )
            banner("0. on the master: cloudcore, then a secret for the boards")
            cloud(m, "init", "--advertise-address", MASTER_IP)
            secret = cloud(m, "secret", "create", "--uses", "4", "--ttl", "24h", capture=True)
            banner("0. on the board: enroll (no token copied by hand)")
            agent(board, "enroll", "--cloud-api", m.url, "--secret", secret)
            banner("1. check: what would make `keadm join` fail on this board")
            agent(board, "check")
            banner("2. fix: repair what can be repaired (each change is printed first)")
            agent(board, "fix", "--yes")
            banner("3. check again")
            agent(board, "check")
            banner("4. join: keadm with flags derived from the board, then verification")
            rc = agent(board, "join", "--yes")
            banner("5. join again: a no-op")
            agent(board, "join", "--yes")
            banner("6. reset: back to a clean board")
            agent(board, "reset", "--yes")
    finally:
        if docker is not None:
            docker.stop()
        if board is not None:
            board.stop_processes()
        seeder.stop()
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)
    banner("done: the join " + ("succeeded" if rc == 0 else f"failed (exit {rc})"))
    return rc


if __name__ == "__main__":
    raise SystemExit(main())

"""The seed guide's four RK3000 boards, as fixture boards for `make demo`: each with its
own root, its own PID namespace (so one board's edgecore or k3s is not another's
conflict), its own dockerd inside that namespace (reading the board's daemon.json,
restarted by the board's systemctl) and its own SNTP server (the board's clock).

| board    | what the guide's reader had                                        |
|----------|--------------------------------------------------------------------|
| rk3000-1 | nothing wrong                                                      |
| rk3000-2 | k3s installed and running (kedge must stop there: removing it is the owner's call) |
| rk3000-3 | docker on the cgroupfs driver, edgecore configured for systemd     |
| rk3000-4 | its clock 10 minutes behind (x509 "certificate is not yet valid")  |
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.board import Board
from tests.harness.dockerd import Dockerd
from tests.harness.pidns import PidNamespace
from tests.harness.procs import spawn, stop
from tests.harness.sntp import SntpServer
from tests.kubeedge_sim.chronyc import OFFSET_FILE

AGENT = str(Path(sys.executable).with_name("kedge-agent"))
SYSTEMD_DRIVER = {"exec-opts": ["native.cgroupdriver=systemd"]}

PROBLEMS = {
    "rk3000-1": "nothing wrong",
    "rk3000-2": "k3s installed and running",
    "rk3000-3": "docker on the cgroupfs driver, edgecore set for systemd",
    "rk3000-4": "its clock 10 minutes behind",
}


@dataclass
class SeedBoard:
    name: str
    board: Board
    ns: PidNamespace
    docker: Dockerd
    ntp: SntpServer
    daemon: subprocess.Popen[bytes] | None = None
    codes: dict[str, int] = field(default_factory=dict)  # the exit code of each step

    @property
    def problem(self) -> str:
        return PROBLEMS[self.name]

    def agent(self, *args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
        """`kedge-agent ARGS` on this board, inside its PID namespace."""
        argv = [
            AGENT,
            *args,
            "--root",
            str(self.board.root),
            "--config",
            str(self.board.config_path),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEDGE_AGENT_")}
        out = subprocess.run(self.ns.argv(*argv), env=env, timeout=600, check=False, text=True,
                             capture_output=capture)  # fmt: skip
        self.codes[args[0]] = out.returncode
        return out

    def start_daemon(self) -> None:
        argv = [
            AGENT,
            "run",
            "--root",
            str(self.board.root),
            "--config",
            str(self.board.config_path),
        ]
        self.daemon = spawn(self.ns.argv(*argv), self.board.root.parent / "daemon.log")

    def stop(self) -> None:
        if self.daemon is not None:
            stop(self.daemon)
        self.ns.stop()  # everything the board started: edgecore, k3s, its dockerd
        self.docker.stop()
        self.ntp.__exit__(None, None, None)


def _k3s(board: Board) -> None:
    """A k3s server as the conflicts check meets it: binary, directories, an active unit,
    a process named k3s (the binary is a copy of sleep: only its name matters)."""
    k3s = board.path("/usr/local/bin/k3s")
    shutil.copy(shutil.which("sleep") or "/bin/sleep", k3s)
    board.write("/usr/local/bin/k3s-uninstall.sh", "#!/bin/sh\n", 0o755)
    board.mkdir("/etc/rancher/k3s")
    board.mkdir("/var/lib/rancher/k3s/server")
    board.write("/etc/systemd/system/k3s.service",
                "[Unit]\nDescription=Lightweight Kubernetes\n\n[Service]\n"
                "ExecStart=/usr/local/bin/k3s infinity\nRestart=always\n")  # fmt: skip


def prepare(work: Path, name: str, mirror_url: str) -> SeedBoard:
    board = Board.create(work / name, hostname=name)
    board.install_keadm("v1.13.0")
    board.install_systemd()
    board.install_sim("chronyc", "tests.kubeedge_sim.chronyc", "/usr/bin")
    daemon_json: dict[str, Any] = {"registry-mirrors": [mirror_url], "log-level": "warn"}
    if name != "rk3000-3":
        daemon_json.update(SYSTEMD_DRIVER)
    board.write("/etc/docker/daemon.json", json.dumps(daemon_json, indent=4) + "\n")
    board.write(OFFSET_FILE, "600\n" if name == "rk3000-4" else "0\n")
    if name == "rk3000-2":
        _k3s(board)
    ns = PidNamespace(work / name / "pidns.log").start()
    ntp = SntpServer(offset_file=board.path(OFFSET_FILE)).__enter__()
    docker = Dockerd(config_file=board.path("/etc/docker/daemon.json"), pidns=ns)
    seeded = SeedBoard(name, board, ns, docker, ntp)
    try:
        docker.start()
        pid = int((docker.workdir / "dockerd.pid").read_text())  # the namespace's PID
        unit = {"exec": docker.argv, "pidfile": str(docker.workdir / "dockerd.pid"), "pid": pid}
        board.write(
            "/var/lib/kedge-sim/systemd.json", json.dumps({"units": {"docker.service": unit}})
        )
        if name == "rk3000-2":
            started = subprocess.run(ns.argv(str(board.path("/usr/bin/systemctl")), "start", "k3s"),
                                     timeout=30, check=False, capture_output=True, text=True)  # fmt: skip
            if started.returncode:
                raise RuntimeError(f"k3s did not start on {name}: {started.stderr}")
    except BaseException:
        with contextlib.suppress(Exception):
            seeded.stop()
        raise
    board.configure(
        {
            "docker_host": docker.socket,
            "ntp_servers": [ntp.address],
            "cgroup_driver": "systemd",
            "join_settle_s": 3,
            "report_interval": 5,
            "thresholds": {"docker_min_free_mb": 1},
        }
    )
    return seeded

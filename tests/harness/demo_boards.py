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

Each is flashed as a fleet would be (docs/firstboot.md): a serial in its device tree, a
wired NIC, the seed on its boot partition and kedge-agent.service on its systemctl; its
`kedge-agent firstboot` does the rest. healthy=True gives rk3000-2 no k3s (the fleet
test: four boards, one seed, all joined).
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

from tests.harness.board import REPO, Board
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
    problem: str = ""

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

    def firstboot(self) -> subprocess.Popen[str]:
        """Power on: the first boot, as kedge-firstboot.service runs it, in the board's namespace."""
        argv = [
            AGENT,
            "firstboot",
            "--root",
            str(self.board.root),
            "--config",
            str(self.board.config_path),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEDGE_AGENT_")}
        return subprocess.Popen(self.ns.argv(*argv), env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)  # fmt: skip

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


def flash(board: Board, serial: str, mac: str) -> None:
    """What the image and the hardware give every board: its serial, a wired NIC, and
    kedge-agent.service (here: `kedge-agent run` on this board, for its systemctl)."""
    board.mkdir("/boot/firmware")  # the FAT partition, mounted
    board.write("/proc/device-tree/serial-number", serial + "\0")
    board.write("/sys/class/net/eth0/address", mac + "\n")
    board.mkdir("/sys/class/net/eth0/device")
    board.write(
        "/lib/systemd/system/kedge-agent.service",
        (REPO / "systemd/kedge-agent.service").read_text(),
    )
    path = board.path("/var/lib/kedge-sim/systemd.json")
    data = json.loads(path.read_text())
    argv = [AGENT, "run", "--root", str(board.root), "--config", str(board.config_path)]
    data["units"]["kedge-agent.service"] = {"exec": argv}
    path.write_text(json.dumps(data))


def prepare(work: Path, name: str, mirror_url: str, *, healthy: bool = False) -> SeedBoard:
    board = Board.create(work / name, hostname=name)
    board.install_keadm("v1.13.0")
    board.install_systemd()
    board.install_sim("chronyc", "tests.kubeedge_sim.chronyc", "/usr/bin")
    daemon_json: dict[str, Any] = {"registry-mirrors": [mirror_url], "log-level": "warn"}
    if name != "rk3000-3":
        daemon_json.update(SYSTEMD_DRIVER)
    board.write("/etc/docker/daemon.json", json.dumps(daemon_json, indent=4) + "\n")
    board.write(OFFSET_FILE, "600\n" if name == "rk3000-4" else "0\n")
    k3s = name == "rk3000-2" and not healthy
    if k3s:
        _k3s(board)
    ns = PidNamespace(work / name / "pidns.log").start()
    ntp = SntpServer(offset_file=board.path(OFFSET_FILE)).__enter__()
    docker = Dockerd(config_file=board.path("/etc/docker/daemon.json"), pidns=ns)
    seeded = SeedBoard(
        name,
        board,
        ns,
        docker,
        ntp,
        problem="nothing wrong" if healthy and name == "rk3000-2" else PROBLEMS[name],
    )
    try:
        docker.start()
        pid = int((docker.workdir / "dockerd.pid").read_text())  # the namespace's PID
        unit = {"exec": docker.argv, "pidfile": str(docker.workdir / "dockerd.pid"), "pid": pid}
        board.write(
            "/var/lib/kedge-sim/systemd.json", json.dumps({"units": {"docker.service": unit}})
        )
        if k3s:
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
            "state_dir": "/var/lib/kedge-agent",
            # Short bounds for a demo: the clock gets 3 s to settle by itself; a board
            # that cannot finish says why at once and leaves its daemon reporting.
            "firstboot": {
                "clock_wait_s": 3,
                "blocked_wait_s": 0,
                "backoff_s": 0.5,
                "backoff_cap_s": 2,
            },
        }
    )
    index = int(name.rsplit("-", 1)[1])
    flash(board, f"RK3000-{0x5EED0000 + index:08X}", f"02:42:c0:a8:1f:{index:02x}")
    return seeded

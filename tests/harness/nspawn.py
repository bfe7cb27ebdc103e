"""A Debian system booted with systemd as PID 1 (`systemd-nspawn --boot`), for the
packaged units under a real systemd: real sandboxing, real Type=notify, real watchdog.

The container shares this machine's network (a broker on 127.0.0.1 is reachable from
both sides). Commands run inside through nsenter into the container's init.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.harness.wait import wait_for

# A board has the kernel log device, which nspawn leaves out: edgecore's kubelet opens
# it as it starts (the `kmsg` check fails without it).
BOARD_DEVICES = ("--bind=/dev/kmsg",)


@dataclass
class Container:
    root: Path
    proc: subprocess.Popen[bytes]
    init_pid: int
    log: Path

    def run(
        self, *argv: str, timeout: float = 120, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        cmd = ["nsenter", "-t", str(self.init_pid), "-m", "-u", "-i", "-n", "-p", "--",
               "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", *argv]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if check and out.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)}: exit {out.returncode}\n{out.stdout}\n{out.stderr}"
            )
        return out

    def systemctl(self, *args: str) -> str:
        return self.run("systemctl", *args).stdout.strip()

    def show(self, unit: str, prop: str) -> str:
        return self.systemctl("show", "-p", prop, "--value", unit)

    def journal(self, unit: str) -> str:
        return self.run("journalctl", "-u", unit, "--no-pager", "-o", "cat").stdout


def _init_of(nspawn: subprocess.Popen[bytes]) -> int | None:
    try:
        for child in psutil.Process(nspawn.pid).children(recursive=True):
            if child.name() == "systemd":
                return child.pid
    except psutil.Error:
        return None
    return None


@contextmanager
def booted(
    root: Path, log: Path, *extra: str, machine: str = "kedge-boot-test"
) -> Iterator[Container]:
    """Boot `root` (extra: more systemd-nspawn options, such as --bind); yield once
    `systemctl is-system-running` settles; power off after."""
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            ["systemd-nspawn", "-D", str(root), "--register=no", "--keep-unit", "--boot",
             "--console=pipe", "--machine", machine, *BOARD_DEVICES, *extra],
            stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        init_pid = wait_for(lambda: _init_of(proc), timeout=60, what="the container's systemd")
        box = Container(root, proc, init_pid, log)

        def settled() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"systemd-nspawn exited {proc.returncode}: {log.read_text()[-2000:]}"
                )
            state = box.systemctl("is-system-running")
            return state in ("running", "degraded")

        wait_for(settled, timeout=120, what="the container to boot", interval=0.5)
        yield box
    finally:
        if proc.poll() is None:
            init = _init_of(proc)
            if init is not None:
                subprocess.run(["nsenter", "-t", str(init), "-m", "-p", "--", "systemctl", "poweroff"],
                               capture_output=True, timeout=60, check=False)  # fmt: skip
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    proc.wait(1)
                except subprocess.TimeoutExpired:
                    continue
            if proc.poll() is None:
                proc.kill()
                proc.wait(30)

"""A PID namespace per simulated board: on a real board `pidof edgecore` and the
agent's conflicts check see only that board's processes; fixture boards sharing this
machine would otherwise see each other's edgecore, k3s and dockerd.

The namespace lives as long as its first process, a small reaper (a PID 1 must reap
the orphans it inherits: the daemons the systemctl simulator starts outlive the
command that started them). Commands enter it with nsenter (its PID namespace and the
mount namespace whose /proc shows that namespace). Killing the reaper kills every
process in the namespace: nothing a board started outlives its `stop()`.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.harness.procs import spawn
from tests.harness.wait import wait_for

# PID 1 of the namespace: reaps whatever it inherits, until it is killed.
REAPER = """
import os, signal
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
while True:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass
    signal.sigtimedwait({signal.SIGCHLD}, 5)
"""


@dataclass
class PidNamespace:
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    init: int = 0  # the reaper's PID, as this machine sees it

    def start(self) -> PidNamespace:
        self.proc, self.init = start_init(["--pid", "--fork", "--mount-proc"], self.log)
        return self

    def argv(self, *argv: str) -> list[str]:
        """`argv`, run inside the namespace."""
        return ["nsenter", f"--target={self.init}", "--pid", "--mount", "--", *argv]

    def stop(self) -> None:
        kill_init(self.proc, self.init)
        self.proc, self.init = None, 0


def start_init(unshare: list[str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`unshare` with these namespaces around the reaper: the unshare process and the
    reaper's PID (the namespace's first process) as this machine sees it."""
    proc = spawn(["unshare", *unshare, "--kill-child", sys.executable, "-c", REAPER], log)

    def reaper() -> int | None:
        if proc.poll() is not None:
            raise RuntimeError(f"unshare exited {proc.returncode}: {log.read_text()}")
        children = psutil.Process(proc.pid).children()
        return children[0].pid if children else None

    return proc, wait_for(reaper, timeout=20, what="the namespace's first process")


def kill_init(proc: subprocess.Popen[bytes] | None, init: int) -> None:
    """Kill the namespace's first process, and with it every process inside."""
    if init:
        with contextlib.suppress(psutil.Error):
            psutil.Process(init).send_signal(signal.SIGKILL)
    if proc is not None:
        proc.wait(30)

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
        argv = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable]
        self.proc = spawn([*argv, "-c", REAPER], self.log)

        def reaper() -> int | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"unshare exited {self.proc.returncode}: {self.log.read_text()}")
            children = psutil.Process(self.proc.pid).children()
            return children[0].pid if children else None

        self.init = wait_for(reaper, timeout=20, what="the PID namespace's first process")
        return self

    def argv(self, *argv: str) -> list[str]:
        """`argv`, run inside the namespace."""
        return ["nsenter", f"--target={self.init}", "--pid", "--mount", "--", *argv]

    def stop(self) -> None:
        if self.init:
            with contextlib.suppress(psutil.Error):
                psutil.Process(self.init).send_signal(signal.SIGKILL)
            self.init = 0
        if self.proc is not None:
            self.proc.wait(30)
            self.proc = None

"""Real processes that look like another program: a copy of sleep named kubelet."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from tests.harness.procs import stop
from tests.harness.wait import wait_for


@contextmanager
def named_process(name: str, workdir: Path) -> Iterator[int]:
    """Run a copy of /bin/sleep called `name` (its executable name is `name`)."""
    exe = workdir / name
    if not exe.exists():
        shutil.copy2(shutil.which("sleep") or "/bin/sleep", exe)
    proc = subprocess.Popen([str(exe), "600"], start_new_session=True)
    try:
        wait_for(
            lambda: psutil.Process(proc.pid).exe() == str(exe), timeout=10, what=f"process {name}"
        )
        yield proc.pid
    finally:
        stop(proc)

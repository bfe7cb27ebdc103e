"""One test run or demo at a time on a machine, and what a killed one left removed.

The harness's networks use fixed addresses (the master's LAN is 198.18.0.0/24). A run
killed where no finally block runs (SIGKILL, a session that ends) leaves its network
namespace and its veth behind, and the veth keeps the route: every later master is
then unreachable ("the cloud API: not ready ... Connection refused") although it
serves. Holding a lock for the whole run makes "left behind" decidable: whoever gets
the lock knows every kedge-* namespace and kv* veth belongs to a run that is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

LOCK = Path("/run/kedge-tests.lock")
# A process started by the run that holds the lock (make demo under test_demo) sees
# this and does not ask again.
HELD_BY = "KEDGE_TESTS_LOCK_PID"
NETNS_PREFIX = "kedge-"
VETH_PREFIX = "kv"


class Busy(RuntimeError):
    pass


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)


def sweep() -> list[str]:
    """Remove kedge-* namespaces (and what still runs in them) and kv* veths; say which."""
    removed: list[str] = []
    for line in _ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(NETNS_PREFIX):
            continue
        for pid in _ip("netns", "pids", name).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _ip("netns", "delete", name)
        removed.append(f"namespace {name}")
    links = json.loads(_ip("-j", "link", "show").stdout or "[]")
    for link in links:
        name = link.get("ifname", "")
        if name.startswith(VETH_PREFIX) and link.get("link_type") == "ether":
            _ip("link", "delete", name)
            removed.append(f"veth {name}")
    return removed


@contextlib.contextmanager
def exclusive(what: str) -> Iterator[list[str]]:
    """Hold the machine's test lock for `what`; yields what a dead run had left."""
    if os.geteuid() != 0 or os.environ.get(HELD_BY) == _holder():
        yield []
        return
    fd = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(
                f"{what}: another kedge test run or demo is running here (pid {_holder()}); "
                "they share fixed addresses, so wait for it to end or stop it"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        previous = os.environ.get(HELD_BY)
        os.environ[HELD_BY] = str(os.getpid())
        try:
            yield sweep()
        finally:
            if previous is None:
                os.environ.pop(HELD_BY, None)
            else:
                os.environ[HELD_BY] = previous
    finally:
        os.close(fd)


def _holder() -> str:
    try:
        return LOCK.read_text().strip() or "unknown"
    except OSError:
        return "unknown"

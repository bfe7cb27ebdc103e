"""The part of systemd that keeps a `Restart=always` service running: run the command,
and when it exits wait RestartSec and run it again, counting NRestarts. While it waits
the unit is "activating" (systemd's auto-restart), not "active" and not "failed" — so a
crash-looping edgecore shows "active" only in the windows between its crashes.

Run: python -m tests.kubeedge_sim.supervise STATEFILE RESTART_SEC COMMAND...
(the simulated systemctl starts it; SIGTERM stops it and the service.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def _write(path: Path, **fields: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(fields))
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    path, restart_sec, command = Path(argv[0]), float(argv[1]), argv[2:]
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.terminate()

    signal.signal(signal.SIGTERM, stop)
    restarts = 0
    while not stopping:
        try:
            child = subprocess.Popen(command, start_new_session=True)
        except OSError as exc:
            # systemd's words for an ExecStart it cannot run, then the same restart policy.
            print(f"Failed to execute {command[0]}: {exc.strerror}", flush=True)
            print("Main process exited, code=exited, status=203/EXEC", flush=True)
            child = None
        else:
            _write(path, state="active", child=child.pid, restarts=restarts)
            child.wait()
        if stopping:
            break
        _write(path, state="activating", child=None, restarts=restarts)
        deadline = time.monotonic() + restart_sec
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.05)  # systemd's RestartSec timer, not a wait for a condition
        restarts += 1
    if child is not None and child.poll() is None:
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
    _write(path, state="inactive", child=None, restarts=restarts)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

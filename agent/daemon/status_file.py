"""<state_dir>/daemon.json: what `kedge-agent status` shows, written by the daemon.

Written when what it says changes and at least every REFRESH_S (so `last_report`
stays recent), never at every report: a board's flash is written per change, not per
interval. Not fsynced: it describes a running process, and a power cut ends that."""

from __future__ import annotations

import time
from pathlib import Path

from agent.state import StateDir
from kedge.private_files import write_private
from kedge.wire import DaemonStatus

# ext4 charges a small file replaced by rename 4-28 KB: twice an hour is the budget.
REFRESH_S = 1800.0


def status_path(state: StateDir) -> Path:
    return state.path / "daemon.json"


class StatusFile:
    def __init__(self, path: Path, refresh_s: float = REFRESH_S) -> None:
        self.path = path
        self.refresh_s = refresh_s
        self._written: tuple[DaemonStatus, float] | None = None

    def write(self, status: DaemonStatus, *, force: bool = False) -> bool:
        """Write `status` unless the file already says the same and is fresh enough;
        whether it wrote. OSError when the state directory cannot be written."""
        now = time.monotonic()
        # What changes by itself at steady state is not news: the time of the last report,
        # and the time of the latest preflight (every check_interval) when its verdict is
        # the same. Either is brought up to date by the next write.
        checks = status.checks.model_copy(update={"at": None}) if status.checks else None
        same = status.model_copy(update={"last_report": None, "checks": checks})
        if not force and self._written is not None:
            said, at = self._written
            if said == same and now - at < self.refresh_s:
                return False
        write_private(self.path, status.model_dump_json(indent=2), fsync=False)
        self._written = (same, now)
        return True

"""The agent's state directory (below the board root): the mutation lock and the record
of the last join."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from kedge.errors import KedgeError, first_problem
from kedge.host import Host
from kedge.private_files import write_private
from kedge.wire import Cause

JoinPhase = Literal["preflight", "keadm", "verify", "joined", "failed", "interrupted"]


class StateCorrupt(KedgeError):
    """A state file exists but is not what kedge-agent wrote (damaged, edited, truncated)."""


class Busy(KedgeError):
    """Another mutating kedge-agent command holds the lock."""


class JoinRecord(BaseModel):
    phase: JoinPhase
    node: str
    cloudcore: str
    kubeedge_version: str
    started_at: datetime
    finished_at: datetime | None = None
    keadm_exit_code: int | None = None
    argv: list[str] = []  # token redacted
    causes: list[Cause] = []

    @property
    def unfinished(self) -> bool:
        """kedge started this join and never saw it through: its leftovers are ours."""
        return self.phase not in ("joined",)


def now() -> datetime:
    return datetime.now(UTC)


class StateDir:
    def __init__(self, host: Host, path: Path) -> None:
        self.path = host.path(str(path))

    def _file(self, name: str) -> Path:
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return self.path / name

    @contextlib.contextmanager
    def lock(self, command: str) -> Iterator[None]:
        """One mutating command at a time per board; released even if we are killed."""
        fd = os.open(self._file("lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
                raise Busy(f"another kedge-agent command is changing this board ({holder}); "
                           "wait for it to finish") from None  # fmt: skip
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"kedge-agent {command}, pid {os.getpid()}".encode(), 0)
            yield
        finally:
            os.close(fd)

    def load_join(self) -> JoinRecord | None:
        """The last join's record; None when there is none. StateCorrupt when the file is
        damaged: "never joined" would be a lie that hides leftovers."""
        path = self.path / "join.json"  # reading creates nothing: checks only read
        try:
            return JoinRecord.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return None
        except ValidationError as exc:
            raise StateCorrupt(
                f"{path} is damaged ({first_problem(exc, 'document')}): run kedge-agent reset --yes to "
                "clean up whatever that join left, which also removes the record"
            ) from None

    def save_join(self, record: JoinRecord) -> None:
        write_private(self._file("join.json"), record.model_dump_json(indent=2))

    def clear_join(self) -> bool:
        try:
            self._file("join.json").unlink()
        except FileNotFoundError:
            return False
        return True

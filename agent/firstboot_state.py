"""The first boot's progress in the state directory: firstboot.json (0600), rewritten at
every change so a power loss resumes at the phase it was in, and firstboot.pending, the
file the unit's condition looks for while a first boot is unfinished."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel

from kedge.private_files import read_model, write_private
from kedge.wire import FirstBootProgress

RECORD_FILE = "firstboot.json"
PENDING_FILE = "firstboot.pending"


class Record(BaseModel):
    seed_sha256: str
    progress: FirstBootProgress


def now() -> datetime:
    return datetime.now(UTC)


def load(state_dir: Path) -> Record | None:
    return read_model(state_dir / RECORD_FILE, Record, "progress",
                      "damaged: remove it, and the first boot starts again from the seed kept "
                      "beside it")  # fmt: skip


def save(state_dir: Path, record: Record) -> None:
    write_private(state_dir / RECORD_FILE, record.model_dump_json(indent=1) + "\n")
    pending = state_dir / PENDING_FILE
    if record.progress.state == "done":
        pending.unlink(missing_ok=True)
    elif not pending.exists():
        write_private(pending, "kedge-agent firstboot has not finished: see kedge-agent status\n")

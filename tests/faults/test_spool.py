"""The spool: memory first, disk only when it must, in order and bounded, and carrying
on in memory when the disk fails (agent/spool.py)."""

from __future__ import annotations

import os
import stat
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from agent import spool as spool_module
from agent.spool import Spool
from kedge.private_files import create_private

pytestmark = pytest.mark.faults


def drain(s: Spool) -> list[bytes]:
    out = []
    while (item := s.oldest()) is not None:
        out.append(item.payload)
        assert s.ack(item)
    return out


def disk_rows(path: Path) -> int:
    import sqlite3

    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT COUNT(*) FROM spool").fetchone()[0])


def test_acknowledged_reports_never_touch_the_disk(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    s = Spool(path, max_messages=100, max_bytes=1 << 20)
    size = path.stat().st_size, Path(f"{path}-wal").stat().st_size
    for n in range(50):
        s.put("t", f"r{n}".encode())
        item = s.oldest()
        assert item is not None
        assert not item.on_disk
        s.ack(item)
    assert (path.stat().st_size, Path(f"{path}-wal").stat().st_size) == size
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    s.close()


def test_durable_and_spilled_messages_survive_a_restart_in_order(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    s = Spool(path, max_messages=100, max_bytes=1 << 20)
    s.put("t", b"1", durable=True)  # link down
    s.put("t", b"2")  # link back, not yet acknowledged
    s.put("t", b"3")
    s.spill()  # no PUBACK in time
    s.put("t", b"4")
    s.close()  # killed before the daemon's shutdown spill: 4 was never acknowledged
    assert disk_rows(path) == 3
    again = Spool(path, max_messages=100, max_bytes=1 << 20)
    again.put("t", b"5")
    assert drain(again) == [b"1", b"2", b"3", b"5"]


def test_bounds_drop_the_oldest_across_disk_and_memory(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool.db", max_messages=3, max_bytes=1 << 20)
    for n in range(3):
        s.put("t", str(n).encode(), durable=True)
    dropped = sum(s.put("t", str(n).encode()) for n in range(3, 6))
    assert (dropped, s.dropped(), s.depth()) == (3, 3, 3)
    assert drain(s) == [b"3", b"4", b"5"]
    s.close()
    assert Spool(tmp_path / "spool.db", max_messages=3, max_bytes=1 << 20).dropped() == 3


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_database_is_moved_aside_with_one_line(
    tmp_path: Path, damage: str, logs: list[MutableMapping[str, Any]]
) -> None:
    path = tmp_path / "spool.db"
    s = Spool(path, max_messages=100, max_bytes=1 << 20)
    for _ in range(200):
        s.put("t", os.urandom(300), durable=True)
    s.close()
    Path(f"{path}-wal").unlink(missing_ok=True)
    if damage == "garbage":
        path.write_bytes(os.urandom(8192))
    else:
        with path.open("r+b") as fh:
            fh.truncate(path.stat().st_size // 3)
    fresh = Spool(path, max_messages=100, max_bytes=1 << 20)
    assert [entry["event"] for entry in logs] == ["spool.corrupt_moved_aside"]
    assert (tmp_path / "spool.db.corrupt-1").exists()
    assert fresh.error is None
    fresh.put("t", b"new", durable=True)
    assert drain(fresh) == [b"new"]


def test_a_failing_disk_keeps_reporting_in_memory_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logs: list[MutableMapping[str, Any]]
) -> None:
    monkeypatch.setattr(spool_module, "RETRY_S", 0.0)
    state = tmp_path / "state"
    state.mkdir()
    path = state / "spool.db"
    s = Spool(path, max_messages=5, max_bytes=1 << 20)
    s.close()
    path.unlink()
    state.chmod(0o500)  # what a full or read-only disk does to SQLite: no writes
    if os.access(state, os.W_OK):  # root ignores modes: take the directory away instead
        state.chmod(0o700)
        monkeypatch.setattr(spool_module, "create_private", _failing_create)
    s = Spool(path, max_messages=5, max_bytes=1 << 20)
    for n in range(8):
        s.put("t", str(n).encode(), durable=True)
    assert s.remember_command("c-1")
    assert not s.remember_command("c-1")
    assert s.error is not None
    assert (s.depth(), s.dropped()) == (5, 3)  # the bounds hold in memory too
    state.chmod(0o700)
    monkeypatch.setattr(spool_module, "create_private", create_private)
    s.spill()
    assert [e["event"] for e in logs] == ["spool.unavailable", "spool.recovered"]
    assert s.error is None
    assert disk_rows(path) == 5
    assert drain(s) == [b"3", b"4", b"5", b"6", b"7"]


def _failing_create(path: Path) -> None:
    raise OSError(28, "No space left on device")


def test_remembered_command_ids_are_bounded(tmp_path: Path) -> None:
    s = Spool(tmp_path / "spool.db", max_messages=5, max_bytes=1 << 20)
    for n in range(spool_module.MAX_REMEMBERED + 500):
        assert s.remember_command(f"p-{n}")
    import sqlite3

    with sqlite3.connect(tmp_path / "spool.db") as db:
        rows = db.execute("SELECT COUNT(*) FROM commands").fetchone()[0]
    assert rows == spool_module.MAX_REMEMBERED
    assert not s.remember_command(f"p-{spool_module.MAX_REMEMBERED + 499}")

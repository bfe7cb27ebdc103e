"""The on-disk queue of QoS 1 messages (SQLite in the state directory): every report
goes through it, so nothing is lost while the broker is away. Bounded by count and
bytes; the oldest are dropped first and counted. Also remembers command ids."""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,
                                  payload BLOB NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS commands (id TEXT PRIMARY KEY, seen REAL NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('dropped', 0);
"""


@dataclass(frozen=True)
class Spooled:
    id: int
    topic: str
    payload: bytes


class Spool:
    def __init__(self, path: Path, *, max_messages: int, max_bytes: int) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=5, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self.max_messages = max_messages
        self.max_bytes = max_bytes

    def close(self) -> None:
        self._db.close()

    def put(self, topic: str, payload: bytes) -> int:
        """Append; drop the oldest beyond the bounds. Returns how many were dropped."""
        with self._db:
            self._db.execute("INSERT INTO spool (topic, payload, created) VALUES (?, ?, ?)",
                             (topic, payload, time.time()))  # fmt: skip
            dropped = 0
            while True:
                count, size = self._db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM spool"
                ).fetchone()
                if count <= 1 or (count <= self.max_messages and size <= self.max_bytes):
                    break
                self._db.execute("DELETE FROM spool WHERE id = (SELECT MIN(id) FROM spool)")
                dropped += 1
            if dropped:
                self._db.execute(
                    "UPDATE meta SET value = value + ? WHERE key = 'dropped'", (dropped,)
                )
        return dropped

    def oldest(self) -> Spooled | None:
        row = self._db.execute(
            "SELECT id, topic, payload FROM spool ORDER BY id LIMIT 1"
        ).fetchone()
        return Spooled(row[0], row[1], bytes(row[2])) if row else None

    def ack(self, spooled_id: int) -> None:
        self._db.execute("DELETE FROM spool WHERE id = ?", (spooled_id,))

    def depth(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM spool").fetchone()[0])

    def dropped(self) -> int:
        return int(self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()[0])

    def remember_command(self, command_id: str, keep_s: float = 7 * 86400) -> bool:
        """True the first time an id is seen; ids are kept for a week."""
        now = time.time()
        with self._db:
            self._db.execute("DELETE FROM commands WHERE seen < ?", (now - keep_s,))
            cur = self._db.execute(
                "INSERT OR IGNORE INTO commands (id, seen) VALUES (?, ?)", (command_id, now)
            )
        return cur.rowcount == 1

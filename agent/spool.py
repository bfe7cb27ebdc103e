"""The queue of QoS 1 messages on their way to the broker.

Messages wait in memory while the broker acknowledges them as they come: at steady
state the board's flash sees no write for a report. They go to disk (SQLite in the
state directory) only when they must outlive the process or a broken link: when they
are queued while the link is down, when a publish is not acknowledged in time
(`spill`), and at shutdown. Either way: nothing acknowledged is lost, messages leave in
the order they were queued (disk before memory, which always holds the newer ones), and
memory plus disk hold at most `max_messages` and `max_bytes`; the oldest are dropped
first and counted.

When the disk fails (full, read-only, a damaged file) the queue carries on in memory,
within the same bounds: `error` says why, it is logged once, and the disk is tried
again every RETRY_S. A damaged database found at start is moved aside and a fresh one
made. The ids of received commands are remembered here too (a bounded table).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from pathlib import Path

import structlog

from agent.remote import REMEMBER_S
from kedge.private_files import create_private, move_aside

log = structlog.get_logger(__name__)
MAX_REMEMBERED = 1000
RETRY_S = 30.0
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
    on_disk: bool = False


class Spool:
    def __init__(self, path: Path, *, max_messages: int, max_bytes: int) -> None:
        self.path = path
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.error: str | None = None
        self._db: sqlite3.Connection | None = None
        self._retry_at = 0.0
        self._memory: deque[Spooled] = deque()
        self._memory_bytes = 0
        self._next_id = 0
        self._disk_count = self._disk_bytes = 0
        self._dropped = self._dropped_saved = 0
        self._commands: OrderedDict[str, float] = OrderedDict()
        self._sequences: dict[str, int] = {}
        self._open()

    # -- the database, and what happens when it fails ----------------------------
    def _open(self) -> None:
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            if not self.path.exists() or isinstance(exc, sqlite3.OperationalError):
                self._failed(exc)
                return
            aside = move_aside(self.path, str(exc))
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            log.warning("spool.corrupt_moved_aside", path=str(self.path), moved_to=str(aside),
                        error=str(exc))  # fmt: skip
            try:
                self._db = self._connect()
            except (OSError, sqlite3.Error) as again:
                self._failed(again)
                return
        except OSError as exc:
            self._failed(exc)
            return
        count, size = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM spool"
        ).fetchone()
        self._disk_count, self._disk_bytes = int(count), int(size)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'dropped'").fetchone()
        self._dropped = max(self._dropped, int(row[0]))
        self._dropped_saved = int(row[0])

    def _connect(self) -> sqlite3.Connection:
        # 0600 before SQLite opens it: its -wal and -shm files take the same mode.
        create_private(self.path)
        db = sqlite3.connect(self.path, timeout=5, isolation_level=None)
        try:
            # quick_check reads every page: a truncated or overwritten file is found here,
            # at start, not in the middle of an outage.
            _quick_check(db)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(SCHEMA)
        except BaseException:
            db.close()
            raise
        return db

    def _failed(self, exc: BaseException) -> None:
        error = f"{self.path}: {exc}"
        if self.error is None:
            log.error("spool.unavailable", error=error,
                      consequence="queued reports are kept in memory only")  # fmt: skip
        self.error = error
        self._retry_at = time.monotonic() + RETRY_S
        if self._db is not None:
            self._db.close()
            self._db = None

    def _disk(self) -> sqlite3.Connection | None:
        """The database when it works; after a failure, another try every RETRY_S."""
        if self._db is None and self.error is not None and time.monotonic() >= self._retry_at:
            self._open()
            if self._db is not None:
                log.info("spool.recovered", path=str(self.path))
                self.error = None
        return self._db

    def close(self) -> None:
        if self._db is not None:
            if self._dropped != self._dropped_saved:
                with contextlib.suppress(sqlite3.Error), self._db:
                    self._save_dropped(self._db)
            self._db.close()
            self._db = None

    def _save_dropped(self, db: sqlite3.Connection) -> None:
        db.execute("UPDATE meta SET value = ? WHERE key = 'dropped'", (self._dropped,))
        self._dropped_saved = self._dropped

    # -- the queue ------------------------------------------------------------------
    def put(self, topic: str, payload: bytes, *, durable: bool = False) -> int:
        """Queue a message: in memory, or (durable: the link is down) on disk behind
        everything already queued. Returns how many old messages were dropped."""
        self._next_id += 1
        self._memory.append(Spooled(self._next_id, topic, payload))
        self._memory_bytes += len(payload)
        dropped = self._bound()
        if durable:
            self.spill()
        return dropped

    def spill(self) -> None:
        """Move what waits in memory to disk, in order (the link broke, a publish was not
        acknowledged in time, or the daemon stops). Without a disk it stays in memory."""
        if not self._memory or (db := self._disk()) is None:
            return
        rows = [(m.topic, m.payload, time.time()) for m in self._memory]
        try:
            with db:
                db.executemany("INSERT INTO spool (topic, payload, created) VALUES (?, ?, ?)", rows)
                self._save_dropped(db)
        except sqlite3.Error as exc:
            self._failed(exc)
            return
        self._disk_count += len(rows)
        self._disk_bytes += self._memory_bytes
        self._memory.clear()
        self._memory_bytes = 0

    def _bound(self) -> int:
        dropped = 0
        while self.depth() > 1 and (
            self.depth() > self.max_messages
            or self._disk_bytes + self._memory_bytes > self.max_bytes
        ):
            oldest = self.oldest()
            if oldest is None:
                break
            if not self.ack(oldest):
                break  # the disk cannot drop: keep within bounds in memory at least
            dropped += 1
        self._dropped += dropped
        return dropped

    def oldest(self) -> Spooled | None:
        if self._disk_count and (db := self._disk()) is not None:
            try:
                row = db.execute(
                    "SELECT id, topic, payload FROM spool ORDER BY id LIMIT 1"
                ).fetchone()
            except sqlite3.Error as exc:
                self._failed(exc)
            else:
                if row:
                    return Spooled(row[0], row[1], bytes(row[2]), on_disk=True)
                self._disk_count = self._disk_bytes = 0
        return self._memory[0] if self._memory else None

    def ack(self, item: Spooled) -> bool:
        """Forget a message (acknowledged, or dropped); False if the disk failed."""
        if not item.on_disk:
            if self._memory and self._memory[0].id == item.id:
                self._memory.popleft()
                self._memory_bytes -= len(item.payload)
            return True
        db = self._disk()
        if db is None:
            return False
        try:
            db.execute("DELETE FROM spool WHERE id = ?", (item.id,))
        except sqlite3.Error as exc:
            self._failed(exc)
            return False
        self._disk_count -= 1
        self._disk_bytes -= len(item.payload)
        return True

    def depth(self) -> int:
        return self._disk_count + len(self._memory)

    def dropped(self) -> int:
        return self._dropped

    # -- command sequence ----------------------------------------------------------
    def advance_sequence(self, key_id: str, seq: int) -> bool:
        """True when `seq` is above the last accepted under this key, which it becomes
        (on disk, and in memory so a failing disk never takes one twice while the daemon
        runs)."""
        name = f"command_seq:{key_id}"
        last = self._sequences.get(name, 0)
        if (db := self._disk()) is not None:
            try:
                row = db.execute("SELECT value FROM meta WHERE key = ?", (name,)).fetchone()
            except sqlite3.Error as exc:
                self._failed(exc)
            else:
                last = max(last, row[0] if row else 0)
        if seq <= last:
            return False
        self._sequences[name] = seq
        if (db := self._disk()) is not None:
            try:
                with db:
                    db.execute(
                        "INSERT INTO meta (key, value) VALUES (?, ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = max(value, excluded.value)",
                        (name, seq),
                    )
            except sqlite3.Error as exc:
                self._failed(exc)
        return True

    # -- command ids ---------------------------------------------------------------
    def remember_command(self, command_id: str, keep_s: float = REMEMBER_S) -> bool:
        """True the first time an id is seen. Kept as long as a command can live
        (remote.REMEMBER_S), at most MAX_REMEMBERED of them; in memory too, so a
        failing disk never lets a command run twice while the daemon runs."""
        now = time.time()
        while self._commands and next(iter(self._commands.values())) < now - keep_s:
            self._commands.popitem(last=False)
        if command_id in self._commands:
            return False
        self._commands[command_id] = now
        while len(self._commands) > MAX_REMEMBERED:
            self._commands.popitem(last=False)
        if (db := self._disk()) is None:
            return True
        try:
            with db:
                db.execute("DELETE FROM commands WHERE seen < ?", (now - keep_s,))
                cur = db.execute(
                    "INSERT OR IGNORE INTO commands (id, seen) VALUES (?, ?)", (command_id, now)
                )
                db.execute(
                    "DELETE FROM commands WHERE id NOT IN "
                    "(SELECT id FROM commands ORDER BY seen DESC LIMIT ?)",
                    (MAX_REMEMBERED,),
                )
        except sqlite3.Error as exc:
            self._failed(exc)
            return True
        return cur.rowcount == 1


def _quick_check(db: sqlite3.Connection) -> None:
    verdict = db.execute("PRAGMA quick_check").fetchone()
    if verdict != ("ok",):
        raise sqlite3.DatabaseError(f"quick_check: {verdict[0] if verdict else 'no answer'}")

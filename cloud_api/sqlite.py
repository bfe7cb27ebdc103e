"""Opening one of the cloud API's SQLite databases: 0600, WAL, numbered migrations."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

from kedge.errors import ConfigError
from kedge.private_files import create_private


def open_database(path: Path, migrations: Sequence[str]) -> sqlite3.Connection:
    """A connection to `path`, its schema brought to the last migration (PRAGMA
    user_version counts those applied). ConfigError (exit 2) when it cannot be opened."""
    try:
        # 0600 before SQLite opens it: its -wal and -shm files take the same mode.
        create_private(path)
        db = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        for number, script in enumerate(migrations[version:], start=version + 1):
            db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")
    except (OSError, sqlite3.Error) as exc:
        raise ConfigError(
            f"cannot open the database {path}: {exc} (free space, or fix the state "
            "directory's permissions, then start again)"
        ) from exc
    return db


def reader(path: Path) -> sqlite3.Connection:
    """A second connection to an open database, for reads beside its writer (WAL lets
    readers see the last commit while a write goes on)."""
    db = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA query_only=1")
    return db

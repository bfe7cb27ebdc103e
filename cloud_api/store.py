"""SQLite store (WAL) with numbered schema migrations (PRAGMA user_version)."""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

MIGRATIONS = (
    """
    CREATE TABLE enrollment_secrets (
        id TEXT PRIMARY KEY, secret_sha256 TEXT NOT NULL UNIQUE, created REAL NOT NULL,
        expires_at REAL, uses_left INTEGER, note TEXT NOT NULL DEFAULT '');
    CREATE TABLE boards (
        node_name TEXT PRIMARY KEY, arch TEXT NOT NULL, agent_version TEXT NOT NULL,
        enrolled_at REAL NOT NULL, secret_id TEXT);
    """,
)


@dataclass(frozen=True)
class EnrollmentSecret:
    id: str
    created: float
    expires_at: float | None
    uses_left: int | None
    note: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._migrate()

    def _migrate(self) -> None:
        version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self._db:
                self._db.executescript(f"BEGIN; {script}; PRAGMA user_version = {number}; COMMIT;")

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def ping(self) -> bool:
        return bool(self._db.execute("SELECT 1").fetchone() == (1,))

    def create_secret(
        self, *, ttl_s: float | None, uses: int | None, note: str
    ) -> tuple[str, EnrollmentSecret]:
        """A new enrollment secret: the secret is returned once, only its hash is kept."""
        secret = secrets.token_urlsafe(24)
        record = EnrollmentSecret(
            id=secrets.token_hex(6), created=time.time(),
            expires_at=time.time() + ttl_s if ttl_s else None, uses_left=uses, note=note,
        )  # fmt: skip
        self._db.execute(
            "INSERT INTO enrollment_secrets (id, secret_sha256, created, expires_at, uses_left, note) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                record.id,
                _hash(secret),
                record.created,
                record.expires_at,
                record.uses_left,
                record.note,
            ),
        )
        return secret, record

    def secrets(self) -> list[EnrollmentSecret]:
        rows = self._db.execute(
            "SELECT id, created, expires_at, uses_left, note FROM enrollment_secrets ORDER BY created"
        ).fetchall()
        return [EnrollmentSecret(*row) for row in rows]

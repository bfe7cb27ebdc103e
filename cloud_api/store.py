"""SQLite store (WAL) with numbered schema migrations (PRAGMA user_version)."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloud_api.sqlite import open_database

MIGRATIONS = (
    """
    CREATE TABLE enrollment_secrets (
        id TEXT PRIMARY KEY, secret_sha256 TEXT NOT NULL UNIQUE, created REAL NOT NULL,
        expires_at REAL, uses_left INTEGER, note TEXT NOT NULL DEFAULT '');
    CREATE TABLE boards (
        node_name TEXT PRIMARY KEY, arch TEXT NOT NULL, agent_version TEXT NOT NULL,
        enrolled_at REAL NOT NULL, secret_id TEXT);
    """,
    """
    ALTER TABLE boards ADD COLUMN machine_id TEXT;
    CREATE TABLE cloudcore (
        id INTEGER PRIMARY KEY CHECK (id = 1), advertise TEXT NOT NULL, version TEXT NOT NULL,
        installed_at REAL NOT NULL);
    """,
    """
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, phase TEXT NOT NULL,
        created REAL NOT NULL, finished REAL, error TEXT);
    """,
    """
    ALTER TABLE boards ADD COLUMN command_key TEXT;  -- the MAC key for its commands
    """,
)
INTERRUPTED = (
    "the service stopped or was killed before the job finished (its keadm was stopped "
    "with it): check kedge-cloud-api status, then run the command again"
)
KEPT_JOB_RECORDS = 200


@dataclass(frozen=True)
class EnrollmentSecret:
    id: str
    created: float
    expires_at: float | None
    uses_left: int | None
    note: str


@dataclass(frozen=True)
class Board:
    node_name: str
    arch: str
    agent_version: str
    enrolled_at: float
    secret_id: str | None
    machine_id: str | None
    command_key: str | None = None


@dataclass(frozen=True)
class CloudcoreRecord:
    advertise: tuple[str, ...]
    version: str
    installed_at: float


class SecretRefused(Exception):
    """The enrollment secret is unknown (reason "unknown"), expired or used up."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Store:
    def __init__(self, path: Path) -> None:
        self._db = open_database(path, MIGRATIONS)

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
            id=secrets.token_hex(6),
            created=time.time(),
            expires_at=time.time() + ttl_s if ttl_s else None,
            uses_left=uses,
            note=note,
        )
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

    def revoke_secret(self, secret_id: str) -> bool:
        """Forget a secret: boards can no longer enroll with it. False if unknown."""
        return (
            self._db.execute("DELETE FROM enrollment_secrets WHERE id = ?", (secret_id,)).rowcount
            > 0
        )

    # -- enrollment ------------------------------------------------------------
    def _usable_secret(self, secret: str) -> str:
        row = self._db.execute(
            "SELECT id, expires_at, uses_left FROM enrollment_secrets WHERE secret_sha256 = ?",
            (_hash(secret),),
        ).fetchone()
        if row is None:
            raise SecretRefused("unknown")
        if row[1] is not None and row[1] <= time.time():
            raise SecretRefused("expired")
        if row[2] is not None and row[2] <= 0:
            raise SecretRefused("used up")
        return str(row[0])

    def spend_use(self, secret: str) -> str:
        """Take one use of the secret now, before any slow work, so concurrent
        enrollments with a one-use secret cannot all get through; returns its id.
        SecretRefused when it may not enroll a board."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            secret_id = self._usable_secret(secret)
            self._db.execute(
                "UPDATE enrollment_secrets SET uses_left = uses_left - 1 "
                "WHERE id = ? AND uses_left IS NOT NULL",
                (secret_id,),
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return secret_id

    def give_back_use(self, secret_id: str) -> None:
        """The enrollment failed after spend_use: the board may try again."""
        self._db.execute(
            "UPDATE enrollment_secrets SET uses_left = uses_left + 1 "
            "WHERE id = ? AND uses_left IS NOT NULL",
            (secret_id,),
        )

    def record_board(self, board: Board) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO boards (node_name, arch, agent_version, enrolled_at, secret_id, "
            "machine_id, command_key) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (board.node_name, board.arch, board.agent_version, board.enrolled_at,
             board.secret_id, board.machine_id, board.command_key),
        )  # fmt: skip

    def forget_board(self, node_name: str) -> bool:
        """The enrollment gone, with the key the board's commands were sealed with."""
        return self._db.execute("DELETE FROM boards WHERE node_name = ?", (node_name,)).rowcount > 0

    def board(self, node_name: str) -> Board | None:
        row = self._db.execute(
            "SELECT node_name, arch, agent_version, enrolled_at, secret_id, machine_id, command_key FROM boards "
            "WHERE node_name = ?",
            (node_name,),
        ).fetchone()
        return Board(*row) if row else None

    def boards(self) -> list[Board]:
        rows = self._db.execute(
            "SELECT node_name, arch, agent_version, enrolled_at, secret_id, machine_id, command_key FROM boards "
            "ORDER BY node_name"
        ).fetchall()
        return [Board(*row) for row in rows]

    # -- jobs: in memory while they run, their outcome kept here ---------------------
    def record_job(self, view: dict[str, Any]) -> None:
        error = json.dumps(view["error"]) if view["error"] else None
        self._db.execute(
            "INSERT OR REPLACE INTO jobs (id, kind, state, phase, created, finished, error) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (view["id"], view["kind"], view["state"], view["phase"], view["created"],
             view["finished"], error),
        )  # fmt: skip
        self._db.execute(
            "DELETE FROM jobs WHERE id NOT IN (SELECT id FROM jobs ORDER BY created DESC LIMIT ?)",
            (KEPT_JOB_RECORDS,),
        )

    def interrupt_running_jobs(self) -> list[str]:
        """At start: jobs still 'running' belonged to a process that is gone."""
        ids = [r[0] for r in self._db.execute("SELECT id FROM jobs WHERE state = 'running'")]
        error = json.dumps({"message": INTERRUPTED, "details": {}})
        self._db.execute(
            "UPDATE jobs SET state = 'interrupted', finished = ?, error = ? WHERE state = 'running'",
            (time.time(), error),
        )
        return ids

    def job(self, job_id: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT id, kind, state, phase, created, finished, error FROM jobs WHERE id = ?",
            (job_id,),
        ).fetchone()
        if row is None:
            return None
        keys = ("id", "kind", "state", "phase", "created", "finished")
        return {**dict(zip(keys, row[:6], strict=True)), "lines": [], "lines_dropped": 0,
                "result": None, "error": json.loads(row[6]) if row[6] else None}  # fmt: skip

    # -- what this API installed ----------------------------------------------
    def cloudcore(self) -> CloudcoreRecord | None:
        row = self._db.execute("SELECT advertise, version, installed_at FROM cloudcore").fetchone()
        return CloudcoreRecord(tuple(row[0].split(",")), row[1], row[2]) if row else None

    def set_cloudcore(self, advertise: list[str], version: str) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO cloudcore (id, advertise, version, installed_at) VALUES (1, ?, ?, ?)",
            (",".join(advertise), version, time.time()),
        )

    def clear_cloudcore(self) -> None:
        self._db.execute("DELETE FROM cloudcore")

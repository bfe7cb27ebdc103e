"""SQLite store (WAL) with numbered schema migrations (PRAGMA user_version)."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

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
    # Enrollment policies per secret (docs/firstboot.md), the hardware a board named at
    # enrollment (re-flash recognition), and boards waiting for an admin's approval.
    """
    ALTER TABLE enrollment_secrets ADD COLUMN serials TEXT;       -- JSON allowlist, or NULL
    ALTER TABLE enrollment_secrets ADD COLUMN name_pattern TEXT;  -- fnmatch pattern, or NULL
    ALTER TABLE enrollment_secrets ADD COLUMN approval TEXT NOT NULL DEFAULT 'auto';
    ALTER TABLE enrollment_secrets ADD COLUMN reflash TEXT NOT NULL DEFAULT 'reissue';
    ALTER TABLE boards ADD COLUMN serial TEXT;
    ALTER TABLE boards ADD COLUMN macs TEXT;
    ALTER TABLE boards ADD COLUMN enrollments INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE boards ADD COLUMN first_enrolled REAL;
    CREATE TABLE pending_boards (
        node_name TEXT PRIMARY KEY, secret_id TEXT NOT NULL, serial TEXT, macs TEXT,
        machine_id TEXT, arch TEXT NOT NULL, reason TEXT NOT NULL, requested_at REAL NOT NULL,
        last_seen REAL NOT NULL, approved_at REAL);
    """,
    # The admin's no: remembered while the entry lives, so a refused board that asks again
    # is told so instead of waiting again.
    """
    ALTER TABLE pending_boards ADD COLUMN refused_at REAL;
    """,
    # Proofs of a board's key already taken for a one-time act (forget-node): a proof
    # is good for PROOF_WINDOW_S, and must not be good twice within it.
    """
    CREATE TABLE spent_proofs (proof TEXT PRIMARY KEY, at REAL NOT NULL);
    """,
)
MAX_PENDING = 1000  # boards waiting for approval: beyond this, new ones are refused
PENDING_TTL_S = 7 * 86400.0  # a board that has not asked for this long is forgotten
PENDING_PER_SECRET = 100  # boards one secret may have waiting at once
INTERRUPTED = (
    "the service stopped or was killed before the job finished (its keadm was stopped "
    "with it): check kedge-cloud-api status, then run the command again"
)
KEPT_JOB_RECORDS = 200


Approval = Literal["auto", "pending"]
Reflash = Literal["reissue", "pending"]


@dataclass(frozen=True)
class Policy:
    """Who may enroll with a secret, and how (docs/firstboot.md): an allowlist of serials
    (a board not on it waits for approval), a node-name pattern (others are refused),
    every board waiting for approval, and what a re-flashed board gets."""

    serials: tuple[str, ...] | None = None
    name_pattern: str | None = None
    approval: Approval = "auto"
    reflash: Reflash = "reissue"


@dataclass(frozen=True)
class EnrollmentSecret:
    id: str
    created: float
    expires_at: float | None
    uses_left: int | None
    note: str
    policy: Policy = Policy()


@dataclass(frozen=True)
class Board:
    node_name: str
    arch: str
    agent_version: str
    enrolled_at: float
    secret_id: str | None
    machine_id: str | None
    command_key: str | None = None
    serial: str | None = None
    macs: tuple[str, ...] = ()
    enrollments: int = 1
    first_enrolled: float | None = None


@dataclass(frozen=True)
class PendingBoard:
    node_name: str
    secret_id: str
    serial: str | None
    macs: tuple[str, ...]
    machine_id: str | None
    arch: str
    reason: str
    requested_at: float
    last_seen: float
    approved_at: float | None
    refused_at: float | None = None


class PendingFull(Exception):
    """No room to park another board (the message says whose limit)."""


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
        self, *, ttl_s: float | None, uses: int | None, note: str, policy: Policy = Policy()
    ) -> tuple[str, EnrollmentSecret]:
        """A new enrollment secret: the secret is returned once, only its hash is kept."""
        secret = secrets.token_urlsafe(24)
        while secret.startswith("-"):  # `--secret -x…` would read as an option on a board
            secret = secrets.token_urlsafe(24)
        record = EnrollmentSecret(
            id=secrets.token_hex(6),
            created=time.time(),
            expires_at=time.time() + ttl_s if ttl_s else None,
            uses_left=uses,
            note=note,
            policy=policy,
        )
        serials = json.dumps(list(policy.serials)) if policy.serials is not None else None
        self._db.execute(
            "INSERT INTO enrollment_secrets (id, secret_sha256, created, expires_at, uses_left, "
            "note, serials, name_pattern, approval, reflash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (record.id, _hash(secret), record.created, record.expires_at, record.uses_left,
             record.note, serials, policy.name_pattern, policy.approval, policy.reflash),
        )  # fmt: skip
        return secret, record

    def secrets(self) -> list[EnrollmentSecret]:
        rows = self._db.execute(f"SELECT {_SECRET} FROM enrollment_secrets ORDER BY created")  # noqa: S608
        return [_secret(row) for row in rows]

    def secret_by_id(self, secret_id: str) -> EnrollmentSecret | None:
        row = self._db.execute(
            f"SELECT {_SECRET} FROM enrollment_secrets WHERE id = ?",  # noqa: S608
            (secret_id,),
        ).fetchone()
        return _secret(row) if row else None

    def revoke_secret(self, secret_id: str) -> bool:
        """Forget a secret: boards can no longer enroll with it. False if unknown."""
        return (
            self._db.execute("DELETE FROM enrollment_secrets WHERE id = ?", (secret_id,)).rowcount
            > 0
        )

    # -- enrollment ------------------------------------------------------------
    def usable_secret(self, secret: str) -> EnrollmentSecret:
        """The secret's record if a board may enroll with it now (nothing spent)."""
        return self._usable(secret)

    def _usable(self, secret: str) -> EnrollmentSecret:
        row = self._db.execute(
            f"SELECT {_SECRET} FROM enrollment_secrets WHERE secret_sha256 = ?",  # noqa: S608
            (_hash(secret),),
        ).fetchone()
        if row is None:
            raise SecretRefused("unknown")
        record = _secret(row)
        if record.expires_at is not None and record.expires_at <= time.time():
            raise SecretRefused("expired")
        if record.uses_left is not None and record.uses_left <= 0:
            raise SecretRefused("used up")
        return record

    def spend_use(self, secret: str) -> str:
        """Take one use of the secret now, before any slow work, so concurrent
        enrollments with a one-use secret cannot all get through; returns its id.
        SecretRefused when it may not enroll a board."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            secret_id = self._usable(secret).id
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
            f"INSERT OR REPLACE INTO boards ({_BOARD}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",  # noqa: S608
            (board.node_name, board.arch, board.agent_version, board.enrolled_at,
             board.secret_id, board.machine_id, board.command_key, board.serial,
             json.dumps(list(board.macs)), board.enrollments, board.first_enrolled),
        )  # fmt: skip

    def forget_board(self, node_name: str) -> bool:
        """The enrollment gone, with the key the board's commands were sealed with."""
        return self._db.execute("DELETE FROM boards WHERE node_name = ?", (node_name,)).rowcount > 0

    def board(self, node_name: str) -> Board | None:
        row = self._db.execute(
            f"SELECT {_BOARD} FROM boards WHERE node_name = ?",  # noqa: S608
            (node_name,),
        ).fetchone()
        return _board(row) if row else None

    def boards(self) -> list[Board]:
        rows = self._db.execute(f"SELECT {_BOARD} FROM boards ORDER BY node_name")  # noqa: S608
        return [_board(row) for row in rows]

    # -- boards waiting for an admin ------------------------------------------------
    def park(
        self,
        board: PendingBoard,
        *,
        per_secret: int = PENDING_PER_SECRET,
        ttl_s: float = PENDING_TTL_S,
        secret_uses_left: int | None = None,
    ) -> PendingBoard:
        """Keep (or refresh) a board waiting for approval; an approval already given stays
        only while the board is the same hardware, a refusal while the entry lives.
        Parking spends no use, so it is bounded apart: at most `per_secret` boards wait on
        one secret (and no more than its uses left), MAX_PENDING in all; PendingFull
        beyond. Entries not asked about for `ttl_s`, and those of a secret revoked or
        expired, are dropped first."""
        self.expire_pending(ttl_s)
        known = self.pending(board.node_name)
        same = known is not None and (known.serial, known.machine_id) == (
            board.serial,
            board.machine_id,
        )
        if known is None:
            waiting = self._count_waiting()
            if waiting >= MAX_PENDING:
                raise PendingFull(f"{waiting} boards wait for approval, the most this API keeps")
            limit = per_secret if secret_uses_left is None else min(per_secret, secret_uses_left)
            mine = self._count_waiting(board.secret_id)
            if mine >= limit:
                raise PendingFull(
                    f"{mine} boards already wait on this enrollment secret, the most it may "
                    f"park ({limit}: its uses left, at most {per_secret})"
                )
        keep = same and known is not None
        kept = replace(
            board,
            requested_at=known.requested_at if keep and known else board.requested_at,
            approved_at=known.approved_at if keep and known else None,
            refused_at=known.refused_at if known is not None else None,
        )
        self._db.execute(
            f"INSERT OR REPLACE INTO pending_boards ({_PENDING}) VALUES "  # noqa: S608
            "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                kept.node_name,
                kept.secret_id,
                kept.serial,
                json.dumps(list(kept.macs)),
                kept.machine_id,
                kept.arch,
                kept.reason,
                kept.requested_at,
                kept.last_seen,
                kept.approved_at,
                kept.refused_at,
            ),
        )
        return kept

    def _count_waiting(self, secret_id: str | None = None) -> int:
        """Boards waiting (not refused), on one secret or in all."""
        row = self._db.execute(
            "SELECT count(*) FROM pending_boards WHERE refused_at IS NULL "
            "AND (?1 IS NULL OR secret_id = ?1)",
            (secret_id,),
        ).fetchone()
        return int(row[0])

    def expire_pending(self, ttl_s: float = PENDING_TTL_S) -> int:
        """Drop entries not asked about for ttl_s and those whose secret is gone
        (revoked) or expired; how many."""
        now = time.time()
        return int(
            self._db.execute(
                "DELETE FROM pending_boards WHERE last_seen < ? OR secret_id NOT IN "
                "(SELECT id FROM enrollment_secrets WHERE expires_at IS NULL OR expires_at > ?)",
                (now - ttl_s, now),
            ).rowcount
        )

    def refuse(self, node_name: str) -> PendingBoard | None:
        """The admin's no: the board is told so when it asks again, until its entry
        expires. None if not waiting."""
        self._db.execute(
            "UPDATE pending_boards SET refused_at = ?, approved_at = NULL WHERE node_name = ?",
            (time.time(), node_name),
        )
        return self.pending(node_name)

    def pending(self, node_name: str) -> PendingBoard | None:
        row = self._db.execute(
            f"SELECT {_PENDING} FROM pending_boards WHERE node_name = ?",  # noqa: S608
            (node_name,),
        ).fetchone()
        return _pending(row) if row else None

    def pendings(self, ttl_s: float = PENDING_TTL_S) -> list[PendingBoard]:
        self.expire_pending(ttl_s)
        rows = self._db.execute(f"SELECT {_PENDING} FROM pending_boards ORDER BY requested_at")  # noqa: S608
        return [_pending(row) for row in rows]

    def approve(self, node_name: str) -> PendingBoard | None:
        """The admin's yes: the board's next enrollment goes through. None if not waiting."""
        self._db.execute(
            "UPDATE pending_boards SET approved_at = ?, refused_at = NULL WHERE node_name = ?",
            (time.time(), node_name),
        )
        return self.pending(node_name)

    def unpark(self, node_name: str) -> None:
        self._db.execute("DELETE FROM pending_boards WHERE node_name = ?", (node_name,))

    # -- one-time proofs -------------------------------------------------------------
    def spend_proof(self, proof: str, keep_s: float) -> bool:
        """True the first time `proof` is spent; it is remembered keep_s (as long as it
        could be accepted), so a captured request cannot be sent again."""
        now = time.time()
        self._db.execute("DELETE FROM spent_proofs WHERE at < ?", (now - keep_s,))
        cur = self._db.execute(
            "INSERT OR IGNORE INTO spent_proofs (proof, at) VALUES (?, ?)", (proof, now)
        )
        return cur.rowcount == 1

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


_SECRET = "id, created, expires_at, uses_left, note, serials, name_pattern, approval, reflash"  # noqa: S105 - columns
_BOARD = ("node_name, arch, agent_version, enrolled_at, secret_id, machine_id, command_key, "
          "serial, macs, enrollments, first_enrolled")  # fmt: skip
_PENDING = (
    "node_name, secret_id, serial, macs, machine_id, arch, reason, requested_at, last_seen, "
    "approved_at, refused_at"
)


def _secret(row: tuple[Any, ...]) -> EnrollmentSecret:
    serials = tuple(json.loads(row[5])) if row[5] is not None else None
    return EnrollmentSecret(row[0], row[1], row[2], row[3], row[4],
                            Policy(serials, row[6], row[7], row[8]))  # fmt: skip


def _board(row: tuple[Any, ...]) -> Board:
    return Board(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7],
                 tuple(json.loads(row[8] or "[]")), row[9], row[10])  # fmt: skip


def _pending(row: tuple[Any, ...]) -> PendingBoard:
    return PendingBoard(row[0], row[1], row[2], tuple(json.loads(row[3] or "[]")), *row[4:])

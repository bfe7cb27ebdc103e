"""The fleet's memory: the latest of everything per board, health over time (every report
for a while, then one averaged row per bucket), check reports when they change, and the
commands sent with their results.

SQLite (WAL) in its own file beside the API's state, so heavy ingest never waits on
enrollment or jobs. One writer (the ingest, in a worker thread, a whole batch per
transaction) and one reader (the API's handlers): WAL lets both run at once. What the
rest of the API needs from it is the `FleetStore` protocol, so another backend can
follow for fleets that outgrow one machine."""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cloud_api.sqlite import open_database, reader
from kedge.wire import CheckReport, CommandResult, FirstBootProgress, HealthReport, RemoteCommand

MIGRATIONS = (
    """
    CREATE TABLE nodes (
        node TEXT PRIMARY KEY,
        status TEXT, status_at REAL,        -- the retained online/offline
        last_seen REAL,                     -- any message from the board
        agent_version TEXT, join_phase TEXT,
        cpu REAL, mem REAL, disk REAL, temp REAL, health_at REAL, health TEXT,
        checks_ok INTEGER, failing TEXT, counts TEXT, checks_at REAL, checks TEXT,
        k8s_ready INTEGER, k8s_seen REAL, k8s_reason TEXT);
    CREATE TABLE health (
        node TEXT NOT NULL, t REAL NOT NULL, cpu REAL, mem REAL, disk REAL, temp REAL,
        PRIMARY KEY (node, t)) WITHOUT ROWID;
    CREATE TABLE health_rollup (
        node TEXT NOT NULL, t REAL NOT NULL, n INTEGER NOT NULL,
        cpu REAL, cpu_max REAL, mem REAL, mem_max REAL, disk REAL, temp REAL, temp_max REAL,
        PRIMARY KEY (node, t)) WITHOUT ROWID;
    CREATE TABLE check_reports (
        node TEXT NOT NULL, t REAL NOT NULL, ok INTEGER NOT NULL, failing TEXT NOT NULL,
        report TEXT NOT NULL, PRIMARY KEY (node, t)) WITHOUT ROWID;
    CREATE TABLE commands (
        id TEXT PRIMARY KEY, node TEXT NOT NULL, action TEXT NOT NULL, args TEXT NOT NULL,
        issued_at REAL NOT NULL, expires_at REAL NOT NULL,
        status TEXT, reason TEXT, result TEXT, finished_at REAL);
    CREATE INDEX commands_by_node ON commands (node, issued_at);
    """,
    """
    ALTER TABLE nodes ADD COLUMN allow_remote TEXT;
    """,
    """
    ALTER TABLE nodes ADD COLUMN k8s_pods TEXT;   -- the pods Kubernetes placed on the board
    CREATE TABLE verify_runs (
        job TEXT PRIMARY KEY, started_at REAL NOT NULL, finished_at REAL NOT NULL,
        result TEXT NOT NULL);
    """,
    # The reports as sent (kilobytes each) move out of the table every fleet page reads:
    # at 10,000 boards reading 500 small rows instead of 500 rows with overflow pages
    # halved GET /api/v1/nodes, and a health write no longer rewrites the checks.
    """
    CREATE TABLE node_reports (node TEXT PRIMARY KEY, health TEXT, checks TEXT);
    INSERT INTO node_reports (node, health, checks)
        SELECT node, health, checks FROM nodes WHERE health IS NOT NULL OR checks IS NOT NULL;
    ALTER TABLE nodes DROP COLUMN health;
    ALTER TABLE nodes DROP COLUMN checks;
    """,
    """
    ALTER TABLE nodes ADD COLUMN firstboot TEXT;  -- the latest FirstBootProgress, as sent
    """,
    # How far ahead of the API's clock the board's last report was dated (NULL: not).
    # Such a report is stored at its receive time: dated as sent, it would stay the
    # board's newest and every honest report after it would be history.
    """
    ALTER TABLE nodes ADD COLUMN clock_ahead REAL;
    """,
    # The sequence sealed into each board's commands; kept when a board is forgotten,
    # so it only ever grows. Boards taken out: their reports are ignored until they
    # enroll again (a removed board still running would otherwise come back as a row).
    """
    CREATE TABLE command_seq (node TEXT PRIMARY KEY, seq INTEGER NOT NULL);
    CREATE TABLE removed (node TEXT PRIMARY KEY, at REAL NOT NULL);
    """,
)
KEPT_VERIFY_RUNS = 20
KEPT_COMMANDS_PER_NODE = 50


@dataclass(frozen=True)
class Status:
    node: str
    online: bool
    at: float


@dataclass(frozen=True)
class Health:
    node: str
    report: HealthReport
    at: float
    raw: str = ""  # the JSON as the board sent it (kept as the latest report)
    clock_ahead_s: float | None = None  # dated this far in the future: stored at `at`


@dataclass(frozen=True)
class Checks:
    node: str
    report: CheckReport
    at: float


@dataclass(frozen=True)
class Result:
    node: str
    result: CommandResult
    at: float


@dataclass(frozen=True)
class Progress:
    node: str
    progress: FirstBootProgress
    at: float


Report = Status | Health | Checks | Result | Progress


@dataclass(slots=True)  # not frozen: a frozen dataclass sets each field through object.__setattr__
class NodeRow:
    """One board as the fleet table shows it."""

    node: str
    status: str | None
    status_at: float | None
    last_seen: float | None
    agent_version: str | None
    join_phase: str | None
    cpu: float | None
    mem: float | None
    disk: float | None
    temp: float | None
    checks_ok: bool | None
    failing: list[str]
    counts: dict[str, int]
    checks_at: float | None
    k8s_ready: bool | None
    k8s_reason: str | None
    allow_remote: list[str]
    pods: list[dict[str, str]] | None  # None: Kubernetes has not listed the board's pods
    firstboot: dict[str, Any] | None = None  # phase, state, since, summary, remedy, check
    clock_ahead_s: float | None = None  # its last report was dated this far in the future


@dataclass(frozen=True)
class KubeView:
    """Kubernetes' view of one edge node."""

    ready: bool
    reason: str
    pods: list[dict[str, str]]  # namespace, name, phase, reason


@dataclass(frozen=True)
class Point:
    t: float
    cpu: float | None
    mem: float | None
    disk: float | None
    temp: float | None


class StoreDown(Exception):
    """The database itself failed (disk full, I/O error, locked past its timeout): not
    the fault of any report, so nothing in the batch is acknowledged."""


class FleetStore(Protocol):
    def write(self, batch: Sequence[Report]) -> None: ...
    def nodes(self) -> list[NodeRow]: ...
    def node(self, name: str) -> tuple[NodeRow, dict[str, Any]] | None: ...
    def health(self, name: str, since: float, until: float) -> list[Point]: ...
    def next_seq(self, node: str) -> int: ...
    def removed(self, names: Iterable[str]) -> set[str]: ...
    def enrolled(self, name: str) -> None: ...
    def record_command(self, node: str, command: RemoteCommand) -> None: ...
    def command(self, node: str, command_id: str) -> dict[str, Any] | None: ...
    def commands(self, node: str, limit: int) -> list[dict[str, Any]]: ...
    def set_kube(self, seen: dict[str, KubeView], at: float) -> set[str]: ...
    def save_verify(
        self, job: str, started_at: float, finished_at: float, result: dict[str, Any]
    ) -> None: ...
    def last_verify(self) -> dict[str, Any] | None: ...
    def forget(self, name: str) -> bool: ...
    def compact(
        self, now: float, raw_keep_s: float, bucket_s: int, rollup_keep_s: float
    ) -> int: ...


def _percent_disk(report: HealthReport) -> float | None:
    if not report.disks:
        return None
    root = report.disks.get("/")
    return root.percent if root else max(d.percent for d in report.disks.values())


def _counts(report: CheckReport) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in report.checks:
        counts[c.status.value] = counts.get(c.status.value, 0) + 1
    return counts


class SqliteFleetStore:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._db = open_database(path, MIGRATIONS)
        self._read = reader(path)
        self._lock = threading.Lock()  # one writer at a time, whatever thread it runs in

    def close(self) -> None:
        self._db.close()
        self._read.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """The writer, in one transaction (all of it or none), one writer at a time."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def integrity(self) -> str:
        return str(self._read.execute("PRAGMA integrity_check").fetchone()[0])

    # -- writing (the ingest) --------------------------------------------------------
    def write(self, batch: Sequence[Report]) -> None:
        """Every report in one transaction: all of the batch is stored, or none.
        StoreDown when the database failed; any other exception is the batch's fault."""
        healths = [r for r in batch if isinstance(r, Health)]
        try:
            with self._transaction() as db:
                if healths:
                    self._write_healths(db, healths)
                for r in batch:
                    if not isinstance(r, Health):
                        self._write_one(db, r)
        except sqlite3.OperationalError as exc:
            raise StoreDown(f"{self._path}: {exc}") from exc

    def _write_healths(self, db: sqlite3.Connection, healths: list[Health]) -> None:
        """Health is nearly every message: one statement per kind for the whole batch,
        and only each board's newest report becomes its latest state."""
        rows: list[tuple[str, float, float, float, float | None, float | None]] = []
        newest: dict[str, tuple[float, Health]] = {}
        for r in healths:
            h = r.report
            t = h.timestamp.timestamp()
            rows.append(
                (r.node, t, h.cpu_percent, h.memory.percent, _percent_disk(h), h.temperature_c)
            )
            if r.node not in newest or t >= newest[r.node][0]:
                newest[r.node] = (t, r)
        db.executemany(
            "INSERT OR REPLACE INTO health (node, t, cpu, mem, disk, temp) VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        db.executemany(_SEEN, [(node, r.at) for node, (_, r) in newest.items()])
        # A report replayed from the board's spool is history, not news.
        db.executemany(
            "UPDATE nodes SET agent_version = ?, join_phase = ?, cpu = ?, mem = ?, disk = ?, "
            "temp = ?, health_at = ?, allow_remote = ?, clock_ahead = ? "
            "WHERE node = ? AND coalesce(health_at, 0) <= ?",
            [(r.report.agent_version, r.report.join_phase, r.report.cpu_percent, r.report.memory.percent,
              _percent_disk(r.report), r.report.temperature_c, t,
              json.dumps(r.report.allow_remote), r.clock_ahead_s, node, t)
             for node, (t, r) in newest.items()],
        )  # fmt: skip
        db.executemany(
            _KEEP_REPORT.format(column="health", at="health_at"),
            [(node, r.raw or r.report.to_json(), node, t) for node, (t, r) in newest.items()],
        )

    def _seen(self, db: sqlite3.Connection, node: str, at: float) -> None:
        db.execute(_SEEN, (node, at))

    def _write_one(self, db: sqlite3.Connection, r: Report) -> None:
        if isinstance(r, Status):
            db.execute(
                "INSERT INTO nodes (node, status, status_at) VALUES (?, ?, ?) ON CONFLICT (node) "
                "DO UPDATE SET status = excluded.status, status_at = excluded.status_at",
                (r.node, "online" if r.online else "offline", r.at),
            )
            if r.online:
                self._seen(db, r.node, r.at)
        elif isinstance(r, Checks):
            c = r.report
            t = c.started_at.timestamp()
            failing = sorted(x.id for x in c.checks if x.status.blocks)
            self._seen(db, r.node, r.at)
            db.execute(
                "UPDATE nodes SET checks_ok = ?, failing = ?, counts = ?, checks_at = ? "
                "WHERE node = ? AND coalesce(checks_at, 0) <= ?",
                (int(c.ok), json.dumps(failing), json.dumps(_counts(c)), t, r.node, t),
            )
            db.execute(
                _KEEP_REPORT.format(column="checks", at="checks_at"),
                (r.node, c.to_json(), r.node, t),
            )
            # History keeps a report only when the verdicts changed.
            verdicts = json.dumps({x.id: x.status.value for x in c.checks}, sort_keys=True)
            last = db.execute(
                "SELECT report FROM check_reports WHERE node = ? ORDER BY t DESC LIMIT 1", (r.node,)
            ).fetchone()
            if last is None or _verdicts(last[0]) != verdicts:
                db.execute(
                    "INSERT OR REPLACE INTO check_reports (node, t, ok, failing, report) VALUES (?, ?, ?, ?, ?)",
                    (r.node, t, int(c.ok), json.dumps(failing), c.to_json()),
                )
        elif isinstance(r, Progress):
            self._seen(db, r.node, r.at)
            fb = r.progress
            shown = {"phase": fb.phase, "state": fb.state, "since": fb.since.timestamp(),
                     "summary": fb.summary, "remedy": fb.remedy, "check": fb.check,
                     "started_at": fb.started_at.timestamp()}  # fmt: skip
            db.execute("UPDATE nodes SET firstboot = ? WHERE node = ?", (json.dumps(shown), r.node))
        elif isinstance(r, Result):
            res = r.result
            self._seen(db, r.node, r.at)
            if res.id is not None:
                db.execute(
                    "UPDATE commands SET status = ?, reason = ?, result = ?, finished_at = ? "
                    "WHERE id = ? AND node = ?",
                    (res.status, res.reason, json.dumps(res.result), res.finished_at.timestamp(),
                     res.id, r.node),
                )  # fmt: skip

    def next_seq(self, node: str) -> int:
        """The next command sequence for `node` (1, 2, …; never the same twice)."""
        with self._transaction() as db:
            row = db.execute(
                "INSERT INTO command_seq (node, seq) VALUES (?, 1) ON CONFLICT (node) "
                "DO UPDATE SET seq = seq + 1 RETURNING seq",
                (node,),
            ).fetchone()
        return int(row[0])

    def removed(self, names: Iterable[str]) -> set[str]:
        """Those of `names` taken out of the fleet and not enrolled since."""
        wanted = sorted(set(names))
        if not wanted:
            return set()
        marks = ",".join("?" * len(wanted))
        rows = self._read.execute(f"SELECT node FROM removed WHERE node IN ({marks})", wanted)  # noqa: S608 - placeholders only
        return {r[0] for r in rows}

    def enrolled(self, name: str) -> None:
        """The board enrolled (again): its reports count from now on."""
        with self._transaction() as db:
            db.execute("DELETE FROM removed WHERE node = ?", (name,))

    def record_command(self, node: str, command: RemoteCommand) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO commands (id, node, action, args, issued_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                (command.id, node, command.action, json.dumps(command.args),
                 command.issued_at.timestamp(), command.expires_at.timestamp()),
            )  # fmt: skip
            db.execute(
                "DELETE FROM commands WHERE node = ? AND id NOT IN (SELECT id FROM commands "
                "WHERE node = ? ORDER BY issued_at DESC LIMIT ?)",
                (node, node, KEPT_COMMANDS_PER_NODE),
            )

    def set_kube(self, seen: dict[str, KubeView], at: float) -> set[str]:
        """Kubernetes' view of the edge nodes: Ready and why not, and their pods; a board
        Kubernetes no longer lists loses them. Returns the boards whose view changed."""
        after = {
            n: (int(v.ready), v.reason, json.dumps(v.pods, sort_keys=True)) for n, v in seen.items()
        }
        with self._transaction() as db:
            before = {
                n: (r, why, pods)
                for n, r, why, pods in db.execute("SELECT node, k8s_ready, k8s_reason, k8s_pods FROM nodes")
            }  # fmt: skip
            db.execute(
                "UPDATE nodes SET k8s_ready = NULL, k8s_reason = NULL, k8s_seen = NULL, k8s_pods = NULL"
            )
            db.executemany(
                "INSERT INTO nodes (node, k8s_ready, k8s_reason, k8s_pods, k8s_seen) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (node) DO UPDATE SET k8s_ready = excluded.k8s_ready, "
                "k8s_reason = excluded.k8s_reason, k8s_pods = excluded.k8s_pods, k8s_seen = excluded.k8s_seen",
                [(node, ready, reason, pods, at) for node, (ready, reason, pods) in after.items()],
            )
        gone = {n for n, state in before.items() if state != (None, None, None) and n not in after}
        return gone | {n for n, state in after.items() if before.get(n) != state}

    def save_verify(
        self, job: str, started_at: float, finished_at: float, result: dict[str, Any]
    ) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO verify_runs VALUES (?, ?, ?, ?)",
                       (job, started_at, finished_at, json.dumps(result)))  # fmt: skip
            db.execute(
                "DELETE FROM verify_runs WHERE job NOT IN "
                "(SELECT job FROM verify_runs ORDER BY finished_at DESC LIMIT ?)",
                (KEPT_VERIFY_RUNS,),
            )

    def last_verify(self) -> dict[str, Any] | None:
        """The newest verify job's result, with its job id and times."""
        row = self._read.execute(
            "SELECT job, started_at, finished_at, result FROM verify_runs "
            "ORDER BY finished_at DESC LIMIT 1"
        ).fetchone()
        if row is None:
            return None
        job, started_at, finished_at, result = row
        return {
            "job": job,
            "started_at": started_at,
            "finished_at": finished_at,
            **json.loads(result),
        }

    def forget(self, name: str) -> bool:
        """Everything about the board, and its reports ignored until it enrolls again."""
        with self._transaction() as db:
            gone = db.execute("DELETE FROM nodes WHERE node = ?", (name,)).rowcount
            db.execute(
                "INSERT OR REPLACE INTO removed (node, at) VALUES (?, ?)", (name, time.time())
            )
            for table in ("health", "health_rollup", "check_reports", "commands", "node_reports"):
                db.execute(f"DELETE FROM {table} WHERE node = ?", (name,))  # noqa: S608 - fixed names
        return gone > 0

    def compact(self, now: float, raw_keep_s: float, bucket_s: int, rollup_keep_s: float) -> int:
        """Fold raw health older than raw_keep_s into one row per board and bucket (mean,
        and max where a peak matters), and drop rollups older than rollup_keep_s. Returns
        the raw rows folded."""
        cut = now - raw_keep_s
        with self._transaction() as db:
            db.execute(
                "INSERT INTO health_rollup (node, t, n, cpu, cpu_max, mem, mem_max, disk, temp, temp_max) "
                "SELECT node, CAST(t / ?1 AS INTEGER) * ?1 AS b, count(*), avg(cpu), max(cpu), avg(mem), "
                "max(mem), avg(disk), avg(temp), max(temp) FROM health WHERE t < ?2 GROUP BY node, b "
                "ON CONFLICT (node, t) DO UPDATE SET "
                "cpu = (cpu * n + excluded.cpu * excluded.n) / (n + excluded.n), "
                "mem = (mem * n + excluded.mem * excluded.n) / (n + excluded.n), "
                "disk = (disk * n + excluded.disk * excluded.n) / (n + excluded.n), "
                "temp = (temp * n + excluded.temp * excluded.n) / (n + excluded.n), "
                "cpu_max = max(cpu_max, excluded.cpu_max), mem_max = max(mem_max, excluded.mem_max), "
                "temp_max = max(temp_max, excluded.temp_max), n = n + excluded.n",
                (bucket_s, cut),
            )
            folded = db.execute("DELETE FROM health WHERE t < ?", (cut,)).rowcount
            db.execute("DELETE FROM health_rollup WHERE t < ?", (now - rollup_keep_s,))
        return int(folded)

    # -- reading (the API) -----------------------------------------------------------
    def nodes(self) -> list[NodeRow]:
        return [node_row(r) for r in self.raw_nodes()]

    def raw_page(
        self,
        offset: int,
        limit: int,
        *,
        state: str | None = None,
        failing: str | None = None,
        stale_before: float = 0.0,
    ) -> tuple[int, list[tuple[Any, ...]]]:
        """(how many boards match, one page of their rows unparsed), filtered by SQLite:
        by state (as view.state() tells it; a board heard before stale_before is stale)
        and by a failing check."""
        where, args = _filters(state, failing, stale_before)
        total = int(self._read.execute(f"SELECT count(*) FROM nodes{where}", args).fetchone()[0])  # noqa: S608
        rows = self._read.execute(
            f"SELECT {_ROW} FROM nodes{where} ORDER BY node LIMIT :limit OFFSET :offset",  # noqa: S608
            {**args, "limit": limit, "offset": offset},
        ).fetchall()
        return total, rows

    def raw_nodes(self) -> list[tuple[Any, ...]]:
        """Every board's row unparsed (see node_row): a page of 10,000 boards parses only
        the rows it shows."""
        return self._read.execute(f"SELECT {_ROW} FROM nodes ORDER BY node").fetchall()  # noqa: S608

    def node(self, name: str) -> tuple[NodeRow, dict[str, Any]] | None:
        row = self._read.execute(
            f"SELECT {_ROW}, r.health, r.checks FROM nodes LEFT JOIN node_reports AS r USING (node) "  # noqa: S608
            "WHERE node = ?",
            (name,),
        ).fetchone()
        if row is None:
            return None
        health, checks = row[-2:]
        full = {
            "health": json.loads(health) if health else None,
            "checks": json.loads(checks) if checks else None,
        }
        return node_row(row[:-2]), full

    def health(self, name: str, since: float, until: float) -> list[Point]:
        """Rolled-up points first (older), then every raw report, oldest first."""
        rows = self._read.execute(
            "SELECT t, cpu, mem, disk, temp FROM health_rollup WHERE node = ?1 AND t >= ?2 AND t < ?3 "
            "UNION ALL SELECT t, cpu, mem, disk, temp FROM health WHERE node = ?1 AND t >= ?2 AND t < ?3 "
            "ORDER BY t",
            (name, since, until),
        ).fetchall()
        return [
            Point(t, finite(cpu), finite(mem), finite(disk), finite(temp))
            for t, cpu, mem, disk, temp in rows
        ]

    def command(self, node: str, command_id: str) -> dict[str, Any] | None:
        row = self._read.execute(
            f"SELECT {_COMMAND} FROM commands WHERE node = ? AND id = ?",  # noqa: S608
            (node, command_id),
        ).fetchone()
        return _command(row) if row else None

    def commands(self, node: str, limit: int) -> list[dict[str, Any]]:
        rows = self._read.execute(
            f"SELECT {_COMMAND} FROM commands WHERE node = ? ORDER BY issued_at DESC LIMIT ?",  # noqa: S608
            (node, limit),
        ).fetchall()
        return [_command(r) for r in rows]

    def check_history(self, node: str, limit: int) -> Iterable[tuple[float, bool, list[str]]]:
        rows = self._read.execute(
            "SELECT t, ok, failing FROM check_reports WHERE node = ? ORDER BY t DESC LIMIT ?",
            (node, limit),
        ).fetchall()
        return [(t, bool(ok), json.loads(failing)) for t, ok, failing in rows]


_SEEN = (
    "INSERT INTO nodes (node, last_seen) VALUES (?, ?) ON CONFLICT (node) DO UPDATE "
    "SET last_seen = max(coalesce(last_seen, 0), excluded.last_seen)"
)
_ROW = (
    "node, status, status_at, last_seen, agent_version, join_phase, cpu, mem, disk, temp, "
    "checks_ok, failing, counts, checks_at, k8s_ready, k8s_reason, allow_remote, k8s_pods, "
    "firstboot, clock_ahead"
)
_HEARD = "coalesce(last_seen, status_at, 0)"
_STATES = {  # view.state(), in SQL
    "offline": "status = 'offline'",
    "online": f"status = 'online' AND {_HEARD} >= :stale_before",
    "stale": f"status = 'online' AND {_HEARD} < :stale_before",
    "unknown": "(status IS NULL OR status NOT IN ('online', 'offline'))",
}


def _filters(
    state: str | None, failing: str | None, stale_before: float
) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = []
    args: dict[str, Any] = {"stale_before": stale_before}
    if state is not None:
        clauses.append(_STATES[state])
    if failing is not None:
        # failing holds a JSON list of check ids: find one whole, quoted id (instr, unlike
        # LIKE, is case-sensitive and has no wildcards to escape)
        clauses.append("instr(failing, :failing) > 0")
        args["failing"] = json.dumps(failing)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


# A report as sent becomes the board's latest only if the UPDATE of its row just made it
# the newest (the row's time is now this report's).
_KEEP_REPORT = (
    "INSERT INTO node_reports (node, {column}) SELECT ?, ? FROM nodes WHERE node = ? AND {at} = ? "
    "ON CONFLICT (node) DO UPDATE SET {column} = excluded.{column}"
)
_COMMAND = "id, action, args, issued_at, expires_at, status, reason, result, finished_at"


def _verdicts(report_json: str) -> str:
    checks = json.loads(report_json).get("checks", [])
    return json.dumps({c["id"]: c["status"] for c in checks}, sort_keys=True)


def finite(value: float | None) -> float | None:
    """A stored number as the API may show it: a row written before the wire refused
    non-finite numbers may still hold one, and one such value must not make a whole
    page invalid JSON."""
    return value if value is None or math.isfinite(value) else None


def node_row(r: Sequence[Any]) -> NodeRow:
    """A raw row (raw_nodes) as a NodeRow."""
    return NodeRow(
        node=r[0], status=r[1], status_at=r[2], last_seen=r[3], agent_version=r[4],
        join_phase=r[5], cpu=finite(r[6]), mem=finite(r[7]), disk=finite(r[8]), temp=finite(r[9]),
        checks_ok=None if r[10] is None else bool(r[10]),
        failing=json.loads(r[11]) if r[11] else [], counts=json.loads(r[12]) if r[12] else {},
        checks_at=r[13], k8s_ready=None if r[14] is None else bool(r[14]), k8s_reason=r[15],
        allow_remote=json.loads(r[16]) if r[16] else [],
        pods=json.loads(r[17]) if r[17] else None,
        firstboot=json.loads(r[18]) if r[18] else None, clock_ahead_s=finite(r[19]),
    )  # fmt: skip


def _command(r: Sequence[Any]) -> dict[str, Any]:
    return {
        "id": r[0], "action": r[1], "args": json.loads(r[2]), "issued_at": r[3],
        "expires_at": r[4], "status": r[5] or "sent", "reason": r[6] or "",
        "result": json.loads(r[7]) if r[7] else None, "finished_at": r[8],
    }  # fmt: skip

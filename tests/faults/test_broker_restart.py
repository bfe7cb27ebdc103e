"""The broker restarts while a real board daemon reports and a real cloud API ingests:
the daemon keeps its reports while the broker is gone, the API reconnects to its
persistent session, and every report the board made is stored, once."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.harness.agentd import Agentd
from tests.harness.board import Board
from tests.harness.dockerd import Dockerd
from tests.harness.fleet_api import serve
from tests.harness.mosquitto import Mosquitto
from tests.harness.sntp import SntpServer
from tests.harness.wait import wait_for
from tests.kubeedge_sim.cloudcore import CloudcoreSim
from tests.test_daemon import daemon_settings

pytestmark = [pytest.mark.faults, pytest.mark.docker]


def stored(db: Path) -> tuple[int, int]:
    """(how many health reports the API stored for board-1, the newest one's seq)."""
    if not db.exists():
        return 0, 0
    with sqlite3.connect(db, timeout=10) as c:
        c.execute("BEGIN")  # one snapshot for both reads
        latest = c.execute("SELECT health FROM node_reports WHERE node = 'board-1'").fetchone()
        count = int(c.execute("SELECT count(*) FROM health WHERE node = 'board-1'").fetchone()[0])
    return count, json.loads(latest[0])["seq"] if latest and latest[0] else 0


def spool_depth(board: Board) -> int:
    try:
        return int(
            json.loads(board.path("/var/lib/kedge-agent/daemon.json").read_text())["spool_depth"]
        )
    except (OSError, ValueError, KeyError):
        return 0


def test_a_broker_restart_loses_no_report(
    board: Board, dockerd_systemd: Dockerd, ntp: SntpServer, cloudcore: CloudcoreSim, tmp_path: Path
) -> None:
    broker = Mosquitto(tmp_path / "mosquitto", state_dir=tmp_path / "state").start()
    api = serve(tmp_path, broker)
    board.install_join_tools()
    board.configure(
        daemon_settings(board, dockerd_systemd, ntp, cloudcore, broker, mqtt={"keepalive_s": 5})
    )
    daemon = Agentd(board)
    db = tmp_path / "state" / "fleet.db"
    try:
        wait_for(lambda: stored(db)[0] >= 3, timeout=30, what="reports stored")
        broker.stop()
        wait_for(
            lambda: spool_depth(board) >= 10,
            timeout=60,
            what="reports kept while the broker is gone",
        )
        broker.start()

        # Every report the board made (seq 1..N, one a report interval) is stored once:
        # as many rows as the newest seq, after the kept ones drained.
        def all_stored() -> bool:
            count, newest = stored(db)
            return spool_depth(board) == 0 and newest > 15 and count == newest

        wait_for(all_stored, timeout=90, what="the kept reports and live ones, all stored")
    finally:
        daemon.stop()
        if api.proc.poll() is None:
            api.proc.send_signal(signal.SIGTERM)
            api.proc.wait(30)
        broker.stop()
    log = (tmp_path / "server.log").read_text()
    assert "ingest.link_down" in log  # the API did lose the broker, and came back by itself

"""The fleet view against a real mosquitto and a real `kedge-cloud-api serve`: boards'
reports in, the fleet table and one board in full, bad payloads counted and skipped, a
board that vanishes shown offline by its will, commands round-tripping."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cloud_api.models import NodePage, NodeSummary
from tests.harness.cloud_api import Api
from tests.harness.fleet import Board, checks, health
from tests.harness.fleet_api import board_for, serve
from tests.harness.mosquitto import Mosquitto
from tests.harness.wait import wait_for


def node(api: Api, name: str) -> dict[str, Any] | None:
    status, _, body = api.call("GET", f"/api/v1/nodes/{name}", token=api.token)
    return body if status == 200 else None


def test_reports_make_the_fleet_table(api: Api, boards: dict[str, Board]) -> None:
    one, two = boards["rk3000-1"], boards["rk3000-2"]
    one.send("health", health(one.node, cpu=12.5, temp=51.0))
    one.send("checks", checks(one.node))
    two.send("health", health(two.node))
    two.send("checks", checks(two.node, failing=("clock",)))
    wait_for(lambda: (n := node(api, two.node)) and n["checks"]["failing"], timeout=20,
             what="the second board's checks")  # fmt: skip
    status, _, page = api.call("GET", "/api/v1/nodes", token=api.token)
    assert status == 200
    assert page["total"] == 2
    # The table is built as plain data for speed: it must still be exactly the documented model.
    NodePage.model_validate(page)
    assert all(set(item) == set(NodeSummary.model_fields) for item in page["items"])
    first = page["items"][0]
    assert (first["node"], first["state"], first["cpu_percent"], first["temperature_c"]) == (
        "rk3000-1", "online", 12.5, 51.0)  # fmt: skip
    assert first["checks"] == {
        "ok": True,
        "counts": {"pass": 6},
        "failing": [],
        "at": first["checks"]["at"],
    }
    failing = api.call("GET", "/api/v1/nodes?failing=clock", token=api.token)[2]
    assert [n["node"] for n in failing["items"]] == ["rk3000-2"]
    full = node(api, "rk3000-2")
    assert full is not None
    assert full["check_report"]["checks"][1]["remedy"] == "fix clock"
    assert full["health"]["node"] == "rk3000-2"
    assert full["check_history"][0]["failing"] == ["clock"]


def test_a_board_that_vanishes_goes_offline_by_its_will(api: Api, boards: dict[str, Board]) -> None:
    gone = boards["rk3000-1"]
    gone.send("health", health(gone.node))
    wait_for(
        lambda: (n := node(api, gone.node)) and n["state"] == "online", timeout=20, what="online"
    )
    gone.vanish()
    wait_for(lambda: (n := node(api, gone.node)) and n["state"] == "offline", timeout=30,
             what="the will to mark it offline")  # fmt: skip
    offline = api.call("GET", "/api/v1/nodes?status=offline", token=api.token)[2]
    assert [n["node"] for n in offline["items"]] == [gone.node]


@pytest.mark.parametrize(
    ("leaf", "payload", "reason"),
    [
        ("health", b"{not json", "invalid"),
        ("health", b'{"schema": 2, "node": "rk3000-1"}', "schema"),
        ("checks", b"[]", "invalid"),
        ("status", b"maybe", "status"),
        # Within the broker's message_size_limit (65536), over the API's maximum packet
        # (65536 with the topic and headers): the broker takes it and keeps it from the API.
        ("health", b"x" * 65530, "size"),
    ],
)
def test_bad_payloads_are_counted_and_skipped(
    api: Api, boards: dict[str, Board], leaf: str, payload: bytes, reason: str, tmp_path: Path
) -> None:
    board = boards["rk3000-1"]
    board.publish_raw(f"kedge/{board.node}/{leaf}", payload)
    board.send("health", health(board.node, cpu=33.0))  # what follows still gets in
    wait_for(lambda: (n := node(api, board.node)) and n["cpu_percent"] == 33.0, timeout=20,
             what="the good report after the bad one")  # fmt: skip
    log = (tmp_path / "server.log").read_text()
    if reason != "size":  # the broker drops a packet over the API's maximum (MQTT 5)
        assert f'{{"topic": "kedge/{board.node}/{leaf}", "reason": "{reason}"' in log
    assert "Traceback" not in log


def test_a_board_cannot_speak_for_another(
    api: Api, boards: dict[str, Board], tmp_path: Path
) -> None:
    liar = boards["rk3000-1"]
    liar.send("health", health("rk3000-2", cpu=99.0))
    liar.send("health", health(liar.node, cpu=1.0))
    wait_for(lambda: (n := node(api, liar.node)) and n["cpu_percent"] == 1.0, timeout=20,
             what="the honest report")  # fmt: skip
    assert node(api, "rk3000-2") is None or node(api, "rk3000-2")["cpu_percent"] != 99.0  # type: ignore[index]
    assert "a report for 'rk3000-2' on 'rk3000-1'" in (tmp_path / "server.log").read_text()


def test_commands_round_trip(api: Api, boards: dict[str, Board]) -> None:
    board = boards["rk3000-1"]
    board.send("health", health(board.node))
    wait_for(lambda: node(api, board.node), timeout=20, what="the board")
    status, _, sent = api.call("POST", f"/api/v1/nodes/{board.node}/commands",
                               {"action": "check", "args": {"only": ["clock"]}}, token=api.token)  # fmt: skip
    assert status == 202, sent
    assert sent["status"] == "sent"
    wait_for(lambda: board.commands, timeout=20, what="the command")
    command = board.commands[-1]
    assert (command["id"], command["action"], command["args"]) == (
        sent["id"],
        "check",
        {"only": ["clock"]},
    )
    assert datetime.fromisoformat(command["expires_at"]) - datetime.fromisoformat(command["issued_at"]) == timedelta(
        seconds=300)  # fmt: skip
    board.answer(command, ok=True)
    status, _, done = api.call("GET", f"/api/v1/nodes/{board.node}/commands/{sent['id']}?wait=20",
                               token=api.token)  # fmt: skip
    assert (status, done["status"], done["result"]) == (200, "done", {"ok": True})
    assert node(api, board.node)["commands"][0]["id"] == sent["id"]  # type: ignore[index]
    assert board.forged == []  # sealed with the board's key, for this board


def test_no_command_goes_to_a_board_that_did_not_enroll_here(api: Api, broker: Mosquitto) -> None:
    # It reports (it has a broker identity), but never enrolled with this API.
    stranger = board_for(broker, "rk3000-9")
    try:
        stranger.send("health", health(stranger.node))
        wait_for(lambda: node(api, stranger.node), timeout=20, what="the board")
        status, _, body = api.call("POST", f"/api/v1/nodes/{stranger.node}/commands",
                                   {"action": "ping"}, token=api.token)  # fmt: skip
        assert (status, body["error"]["code"]) == (409, "not_enrolled")
        assert "holds no key to check a command's MAC" in body["error"]["message"]
        assert stranger.commands == []
        assert stranger.forged == []
    finally:
        stranger.close()


def test_health_history_and_its_rollup(api: Api, boards: dict[str, Board], tmp_path: Path) -> None:
    board = boards["rk3000-1"]
    now = datetime.now(UTC)
    for i in range(6):
        board.send(
            "health", health(board.node, cpu=10.0 * i, seq=i, at=now - timedelta(minutes=6 - i))
        )
    wait_for(lambda: len(api.call("GET", f"/api/v1/nodes/{board.node}/health", token=api.token)[2]["points"]) == 6,
             timeout=20, what="six points")  # fmt: skip
    series = api.call("GET", f"/api/v1/nodes/{board.node}/health?step=180", token=api.token)[2]
    assert series["step"] == 180
    assert 2 <= len(series["points"]) <= 3
    empty = api.call("GET", f"/api/v1/nodes/{board.node}/health?since=10&until=5", token=api.token)
    assert (empty[0], empty[2]["points"]) == (200, [])
    bad = api.call("GET", f"/api/v1/nodes/{board.node}/health?step=-1", token=api.token)
    assert (bad[0], bad[2]["error"]["message"]) == (400, "step='-1' is outside 0..2.592e+06")


def test_a_restart_loses_nothing_acknowledged(tmp_path: Path, broker: Mosquitto) -> None:
    """kill -9 during ingest, reports keep coming, restart: the database is intact and
    every report the boards had acknowledged by the broker is there — those sent while
    the API was down were queued in its persistent session."""
    api = serve(tmp_path, broker)
    board = board_for(broker, "rk3000-1")
    try:
        now = datetime.now(UTC) - timedelta(minutes=30)
        for i in range(100):
            board.send("health", health(board.node, seq=i, at=now + timedelta(seconds=i)))
        api.proc.send_signal(signal.SIGKILL)
        api.proc.wait(30)
        for i in range(100, 200):
            board.send("health", health(board.node, seq=i, at=now + timedelta(seconds=i)))
        api = serve(tmp_path, broker)
        db = tmp_path / "state" / "fleet.db"

        def stored() -> int:
            with sqlite3.connect(db) as c:
                return int(c.execute("SELECT count(*) FROM health").fetchone()[0])

        wait_for(lambda: stored() == 200, timeout=30, what="all 200 reports")
        with sqlite3.connect(db) as c:
            assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        board.close()
        api.proc.send_signal(signal.SIGTERM)
        api.proc.wait(30)


def test_metrics_count_the_fleet_and_the_ingest(api: Api, boards: dict[str, Board]) -> None:
    one, two = boards["rk3000-1"], boards["rk3000-2"]
    one.send("health", health(one.node, cpu=12.5))
    two.send("checks", checks(two.node, failing=("clock", "images")))
    one.publish_raw(f"kedge/{one.node}/status", b"maybe")
    wait_for(
        lambda: (n := node(api, two.node)) and n["checks"]["failing"], timeout=20, what="checks"
    )
    request = urllib.request.Request(
        api.url + "/metrics", headers={"Authorization": f"Bearer {api.token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = resp.read().decode()
    lines = set(text.splitlines())
    assert {'kedge_nodes{state="online"} 2', 'kedge_checks_failing{check="clock"} 1',
            'kedge_node_cpu_percent{node="rk3000-1"} 12.5', "kedge_ingest_connected 1",
            'kedge_ingest_bad_payloads_total{reason="status"} 1'} <= lines  # fmt: skip
    assert api.call("GET", "/metrics")[0] == 401


def test_a_board_taken_out_is_reset_first_and_forgotten(api: Api, boards: dict[str, Board]) -> None:
    board = boards["rk3000-1"]
    board.send("health", health(board.node))
    wait_for(
        lambda: (n := node(api, board.node)) and n["cpu_percent"] is not None,
        timeout=20,
        what="the board",
    )

    def answer_reset() -> bool:
        if not board.commands:
            return False
        board.answer(board.commands[-1])
        return True

    import threading

    answering = threading.Thread(
        target=lambda: wait_for(answer_reset, timeout=20, what="the reset")
    )
    answering.start()
    status, _, done = api.call(
        "DELETE", f"/api/v1/nodes/{board.node}?reset=true&wait=20", token=api.token
    )
    answering.join(30)
    assert board.commands[-1]["action"] == "reset"
    # No kubectl here: reset and forgotten, and why the node was not deleted.
    assert (status, done["reset"], done["forgotten"], done["kubernetes_node_deleted"]) == (
        200,
        "done",
        True,
        False,
    )
    assert "kubectl" in done["kubernetes_error"]
    assert node(api, board.node) is None or node(api, board.node)["last_seen"] is None  # type: ignore[index]
    # revoked: its key is gone, so nothing can be sealed for it any more
    assert done["enrollment_revoked"] is True
    # and its broker identity: the broker dropped the connection it had open
    assert (done["broker_identity_removed"], done["broker_error"]) == (True, None)
    wait_for(lambda: not board.connected(), timeout=20, what="the board dropped by the broker")
    status, _, refused = api.call("POST", f"/api/v1/nodes/{board.node}/commands", {"action": "ping"},
                                  token=api.token)  # fmt: skip
    assert (status, refused["error"]["code"]) == (409, "not_enrolled")


def test_reports_queued_for_the_api_survive_a_broker_restart(tmp_path: Path) -> None:
    """With the broker as `broker init` configures it: the API stops, boards keep
    reporting, the broker restarts, the API comes back — every report is stored."""
    broker = Mosquitto(tmp_path / "mosquitto", state_dir=tmp_path / "state").start()
    api = serve(tmp_path, broker)
    try:
        board = board_for(broker, "rk3000-1")
        start_at = datetime.now(UTC) - timedelta(minutes=30)
        for i in range(20):
            board.send("health", health(board.node, seq=i, at=start_at + timedelta(seconds=i)))
        api.proc.send_signal(signal.SIGTERM)
        api.proc.wait(30)
        for i in range(20, 60):  # queued in the API's session, in the broker
            board.send("health", health(board.node, seq=i, at=start_at + timedelta(seconds=i)))
        board.close()
        broker.stop()  # persistence: the queue is written to disk
        broker.start()
        api = serve(tmp_path, broker)
        db = tmp_path / "state" / "fleet.db"

        def stored() -> int:
            with sqlite3.connect(db) as c:
                return int(c.execute("SELECT count(*) FROM health").fetchone()[0])

        wait_for(
            lambda: stored() == 60, timeout=30, what="all 60 reports after the broker's restart"
        )
    finally:
        if api.proc.poll() is None:
            api.proc.send_signal(signal.SIGTERM)
            api.proc.wait(30)
        broker.stop()


def test_the_cli_takes_a_board_out_and_says_what_it_did(api: Api, boards: dict[str, Board]) -> None:
    cli = [str(Path(sys.executable).with_name("kedge-cloud-api")), "remove", "--api", api.url,
           "--token-file", str(api.state / "admin.token")]  # fmt: skip
    board = boards["rk3000-2"]
    board.send("health", health(board.node))
    wait_for(lambda: node(api, board.node), timeout=20, what="the board")
    asked = subprocess.run([*cli, board.node], capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    refusal = "refusing to remove a board without --yes: there is no terminal to ask on"
    assert (asked.returncode, asked.stderr.strip()) == (2, f"kedge-cloud-api: error: {refusal}")
    assert node(api, board.node) is not None  # nothing changed
    done = subprocess.run([*cli, board.node, "--yes"], capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Kubernetes node not deleted: kubectl")  # no cluster here
    assert lines[1:] == [
        "fleet view: forgotten",
        "enrollment and command key revoked: its name is free",
        "broker identity removed, its connection dropped",
    ]
    wait_for(lambda: not board.connected(), timeout=20, what="the board dropped by the broker")
    bad = subprocess.run([*cli, "Not_A_Name", "--yes"], capture_output=True, text=True, timeout=60,
                         check=False)  # fmt: skip
    assert (bad.returncode, bad.stderr.strip()) == (
        2, "kedge-cloud-api: error: 'Not_A_Name' is not a node name (a DNS-1123 subdomain)")  # fmt: skip

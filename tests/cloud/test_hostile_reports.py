"""A board with its own valid identity publishing what no agent sends: times without a
zone, numbers that are not finite, dates far in the future — through a real mosquitto
into a real `kedge-cloud-api serve`. Each used to stop the fleet ingest for good, or make
every admin's fleet page invalid JSON (issue 25, findings 1, 3 and 7)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.harness.cloud_api import Api
from tests.harness.fleet import Board, checks, health
from tests.harness.fleet_api import ingest_connected, serve, stop
from tests.harness.http import get_text, strict_loads
from tests.harness.mosquitto import Mosquitto
from tests.harness.wait import wait_for

pytestmark = pytest.mark.faults
NAIVE = "0001-01-01T00:00:00"


def page(api: Api) -> dict[str, Any]:
    """GET /api/v1/nodes, read as a strict JSON reader reads it."""
    status, text = get_text(api.url + "/api/v1/nodes", api.token)
    assert status == 200, text
    body: dict[str, Any] = strict_loads(text)
    return body


def row(api: Api, name: str) -> dict[str, Any] | None:
    return next((n for n in page(api)["items"] if n["node"] == name), None)


def metrics(api: Api) -> set[str]:
    status, text = get_text(api.url + "/metrics", api.token)
    assert status == 200, text
    return set(text.splitlines())


def honest_report_is_stored(api: Api, board: Board, cpu: float) -> None:
    board.send("health", health(board.node, cpu=cpu))
    wait_for(lambda: (r := row(api, board.node)) is not None and r["cpu_percent"] == cpu,
             timeout=20, what=f"{board.node}'s honest report stored")  # fmt: skip


def with_values(model: Any, **changes: Any) -> bytes:
    """The model's JSON with some values replaced (json writes Infinity and NaN as the
    JavaScript tokens, as a hostile board would)."""
    body = json.loads(model.to_json())
    for dotted, value in changes.items():
        where = body
        *path, last = dotted.split(".")
        for key in path:
            where = where[int(key)] if isinstance(where, list) else where[key]
        where[int(last) if isinstance(where, list) else last] = value
    return json.dumps(body).encode()


def firstboot(node: str) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat()
    return {"schema": 1, "node": node, "phase": "joining", "state": "running", "since": now,
            "summary": "joining", "started_at": now, "timeline": []}  # fmt: skip


POISON = {
    "health.timestamp": lambda n: with_values(health(n), timestamp=NAIVE),
    "checks.started_at": lambda n: with_values(checks(n), started_at=NAIVE),
    "firstboot.since": lambda n: json.dumps({**firstboot(n), "since": NAIVE}).encode(),
    "cmd/result.finished_at": lambda n: json.dumps(
        {"schema": 1, "id": "x1", "action": "ping", "status": "done", "finished_at": NAIVE}
    ).encode(),
    "health.cpu_percent": lambda n: with_values(health(n), cpu_percent=float("inf")),
    "health.memory.percent": lambda n: with_values(health(n), **{"memory.percent": float("nan")}),
    "health.load": lambda n: with_values(health(n), **{"load.1": -float("inf")}),
    "health.temperatures_c": lambda n: with_values(health(n), temperatures_c={"soc": float("inf")}),
}


@pytest.mark.parametrize("case", sorted(POISON))
def test_a_poisoned_report_is_one_bad_payload_and_the_ingest_lives(
    api: Api, boards: dict[str, Board], case: str, tmp_path: Path
) -> None:
    bad, good = boards["rk3000-1"], boards["rk3000-2"]
    leaf = case.split(".")[0]
    retain = leaf == "firstboot"
    bad.publish_raw(f"kedge/{bad.node}/{leaf}", POISON[case](bad.node), retain=retain)
    honest_report_is_stored(api, good, 21.5)
    wait_for(lambda: any(line.startswith("kedge_ingest_bad_payloads_total") for line in metrics(api)),
             timeout=20, what="the bad payload counted")  # fmt: skip
    assert "kedge_ingest_connected 1" in metrics(api)
    assert api.call("GET", "/readyz")[0] == 200
    log = (tmp_path / "server.log").read_text()
    assert f'"topic": "kedge/{bad.node}/{leaf}"' in log
    assert "Traceback" not in log
    # The poisoned board itself is heard again as soon as it says something sane.
    honest_report_is_stored(api, bad, 7.5)


def test_the_poison_is_acknowledged_so_a_restart_does_not_redeliver_it(
    tmp_path: Path, broker: Mosquitto, boards: dict[str, Board]
) -> None:
    """The API's session is persistent and acknowledges after the commit: a poison
    message left unacknowledged would come back after every restart."""
    api = serve(tmp_path, broker)
    ingest_connected(api)
    bad, good = boards["rk3000-1"], boards["rk3000-2"]
    try:
        bad.publish_raw(f"kedge/{bad.node}/health", POISON["health.timestamp"](bad.node))
        honest_report_is_stored(api, good, 11.0)
    finally:
        stop(api)
    api = serve(tmp_path, broker)
    try:
        honest_report_is_stored(api, good, 12.0)
        assert not any(line.startswith("kedge_ingest_bad_payloads_total{") for line in metrics(api))
    finally:
        stop(api)


def test_non_finite_numbers_never_reach_a_page(api: Api, boards: dict[str, Board]) -> None:
    board = boards["rk3000-1"]
    for raw in (b"Infinity", b"1e999", b"NaN", b"-Infinity"):
        body = with_values(health(board.node), cpu_percent=0.0).replace(
            b'"cpu_percent": 0.0', b'"cpu_percent": ' + raw
        )
        assert b'"cpu_percent": ' + raw in body
        board.publish_raw(f"kedge/{board.node}/health", body)
    honest_report_is_stored(api, board, 3.0)
    assert row(api, board.node)["cpu_percent"] == 3.0  # type: ignore[index]
    status, text = get_text(api.url + f"/api/v1/nodes/{board.node}", api.token)
    assert status == 200
    strict_loads(text)


def test_a_report_dated_far_ahead_is_stored_at_its_receive_time_and_flagged(
    api: Api, boards: dict[str, Board]
) -> None:
    """Dated 9999, it used to stay the board's newest report for good."""
    board = boards["rk3000-1"]
    board.send("health", health(board.node, cpu=99.0, at=datetime(9999, 12, 31, tzinfo=UTC)))
    wait_for(lambda: (r := row(api, board.node)) is not None and r["cpu_percent"] == 99.0,
             timeout=20, what="the future-dated report")  # fmt: skip
    flagged = row(api, board.node)
    assert flagged is not None
    assert flagged["clock_ahead_s"] > 1e9
    # The next honest report is newer than the forged one's receive time: it wins.
    board.send("health", health(board.node, cpu=4.0, at=datetime.now(UTC) + timedelta(seconds=1)))
    wait_for(lambda: (r := row(api, board.node)) is not None and r["cpu_percent"] == 4.0,
             timeout=20, what="the honest report after it")  # fmt: skip
    assert row(api, board.node)["clock_ahead_s"] is None  # type: ignore[index]

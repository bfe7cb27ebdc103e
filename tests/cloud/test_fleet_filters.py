"""The fleet table's filters run in SQLite: every state and failing check they select
is the one the API reports for that board (view.state), with paging on the result."""

from __future__ import annotations

from pathlib import Path

from cloud_api.fleet.ingest import Ingest
from cloud_api.fleet.store import Checks, Health, SqliteFleetStore, Status
from cloud_api.fleet.view import page
from kedge.broker import BrokerSettings
from tests.harness.fleet import checks, health

NOW, STALE = 1_800_000_000.0, 60.0


def fleet(tmp_path: Path) -> SqliteFleetStore:
    store = SqliteFleetStore(tmp_path / "fleet.db")
    store.write([
        Status("a-online", True, NOW - 5), Health("a-online", health("a-online"), NOW - 5),
        Checks("a-online", checks("a-online", failing=("clock",)), NOW - 5),
        Status("b-stale", True, NOW - 600),
        Checks("b-stale", checks("b-stale", failing=("clock", "images")), NOW - 600),
        Status("c-offline", False, NOW - 5), Checks("c-offline", checks("c-offline"), NOW - 5),
        Health("d-unknown", health("d-unknown"), NOW - 5),  # no retained status yet
        Checks("e-clockish", checks("e-clockish", failing=("clock-source",)), NOW - 5),
    ])  # fmt: skip
    return store


def names(store: SqliteFleetStore, **filters: str) -> list[str]:
    total, raw = store.raw_page(0, 100, stale_before=NOW - STALE, **filters)
    rows = page(raw, now=NOW, stale_after_s=STALE)
    assert total == len(rows)
    return [r["node"] for r in rows]


def test_each_state_selects_the_boards_the_api_calls_so(tmp_path: Path) -> None:
    store = fleet(tmp_path)
    everyone = page(store.raw_page(0, 100)[1], now=NOW, stale_after_s=STALE)
    told = {r["node"]: r["state"] for r in everyone}
    assert told == {"a-online": "online", "b-stale": "stale", "c-offline": "offline",
                    "d-unknown": "unknown", "e-clockish": "unknown"}  # fmt: skip
    for state in ("online", "stale", "offline", "unknown"):
        assert names(store, state=state) == sorted(n for n, s in told.items() if s == state)


def test_a_failing_check_matches_whole_ids_only(tmp_path: Path) -> None:
    store = fleet(tmp_path)
    assert names(store, failing="clock") == ["a-online", "b-stale"]  # not "clock-source"
    assert names(store, failing="Clock") == []  # ids are case-sensitive
    assert names(store, failing="images", state="stale") == ["b-stale"]
    assert names(store, failing='clock"') == []  # a quote cannot widen the match


def test_paging_applies_to_the_filtered_rows(tmp_path: Path) -> None:
    store = fleet(tmp_path)
    total, raw = store.raw_page(1, 1, failing="clock", stale_before=NOW - STALE)
    assert (total, [r[0] for r in raw]) == (2, ["b-stale"])


def test_reports_are_subscribed_plainly_unless_processes_share_them(tmp_path: Path) -> None:
    broker = BrokerSettings(host="127.0.0.1")
    one = Ingest(broker, fleet(tmp_path), identifier="x", group="", batch_max=1, batch_wait_s=1)
    assert one.subscriptions() == [
        "kedge/+/status",
        "kedge/+/firstboot",  # retained: never through a shared subscription
        "kedge/+/health",
        "kedge/+/checks",
        "kedge/+/cmd/result",
    ]
    split = Ingest(broker, one.store, identifier="x", group="api", batch_max=1, batch_wait_s=1)
    assert split.subscriptions()[2:] == ["$share/api/kedge/+/health", "$share/api/kedge/+/checks",
                                         "$share/api/kedge/+/cmd/result"]  # fmt: skip

"""The fleet ingest cannot be stopped by a message or a bug: one report the store cannot
take is dropped alone, a failing database leaves the batch for redelivery, a crash
restarts the part, and /readyz says when the ingest has been down too long."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path

import pytest
import structlog

from cloud_api.fleet import service
from cloud_api.fleet.ingest import Ingest
from cloud_api.fleet.store import Report, Status, StoreDown
from kedge.broker import BrokerSettings
from tests.harness.cloud_api import start
from tests.harness.fleet_api import stop
from tests.harness.procs import free_port
from tests.harness.wait import wait_for


class PickyStore:
    """Refuses any batch holding a report of `poison`; StoreDown when `down`."""

    def __init__(self, poison: str = "", *, down: bool = False) -> None:
        self.poison, self.down = poison, down
        self.written: list[Report] = []

    def removed(self, names: Iterable[str]) -> set[str]:
        return {n for n in names if n == "gone"}

    def write(self, batch: Sequence[Report]) -> None:
        if self.down:
            raise StoreDown("disk I/O error")
        if any(r.node == self.poison for r in batch):
            raise OverflowError("date value out of range")
        self.written.extend(batch)


def ingest(store: PickyStore) -> Ingest:
    return Ingest(BrokerSettings(host="127.0.0.1"), store, identifier="t", group="",  # type: ignore[arg-type]
                  batch_max=10, batch_wait_s=0.01)  # fmt: skip


def test_only_the_report_the_store_cannot_take_is_dropped() -> None:
    store = PickyStore(poison="bad")
    i = ingest(store)
    batch: list[Report] = [Status("a", True, 1.0), Status("bad", True, 1.0), Status("b", True, 1.0)]
    with structlog.testing.capture_logs() as logs:
        stored = i._store(batch)
    assert [r.node for r in stored] == ["a", "b"] == [r.node for r in store.written]
    assert i.stats.bad["store"] == 1
    assert [e["node"] for e in logs if e["event"] == "ingest.bad_payload"] == ["bad"]


def test_a_removed_boards_reports_are_dropped_and_counted() -> None:
    store = PickyStore()
    i = ingest(store)
    stored = i._store(
        [Status("a", True, 1.0), Status("gone", True, 1.0), Status("gone", False, 2.0)]
    )
    assert [r.node for r in stored] == ["a"] == [r.node for r in store.written]
    assert i.stats.bad["removed"] == 2


def test_a_failing_database_is_nobodys_fault_and_nothing_is_dropped() -> None:
    i = ingest(PickyStore(down=True))
    with pytest.raises(StoreDown):
        i._store([Status("a", True, 1.0)])
    assert not i.stats.bad


async def test_a_crashed_part_is_logged_and_started_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service, "RESTART_BACKOFF_S", (0.01, 0.05))
    runs: list[int] = []
    crashes: list[BaseException] = []

    async def flaky() -> None:
        runs.append(1)
        if len(runs) < 3:
            raise RuntimeError(f"bug number {len(runs)}")

    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(service.supervised("flaky", flaky, crashes.append), 10)
    assert len(runs) == 3
    assert [str(c) for c in crashes] == ["bug number 1", "bug number 2"]
    crashed = [e for e in logs if e["event"] == "fleet.part_crashed"]
    assert [e["part"] for e in crashed] == ["flaky", "flaky"]
    assert all(e["exc_info"] for e in crashed)


def test_readyz_says_when_the_ingest_has_been_down_too_long(tmp_path: Path) -> None:
    config = tmp_path / "cloud-api.toml"
    config.write_text(
        f'[mqtt]\nhost = "127.0.0.1"\nport = {free_port()}\n\n[fleet]\ningest_down_ready_s = 1\n'
    )
    api = start(tmp_path / "state", "--config", str(config))
    try:
        wait_for(lambda: api.call("GET", "/readyz")[0] == 503, timeout=20, what="/readyz 503")
        _, _, body = api.call("GET", "/readyz")
        assert body["error"]["code"] == "not_ready"
        assert "the fleet ingest has had no broker link for" in body["error"]["message"]
        assert api.call("GET", "/healthz")[0] == 200  # alive, not ready: no restart loop
    finally:
        stop(api)

"""Removal that sticks (issue 25, finding 7): a removed board's retained `online` used to
come back as a ghost row after every API restart. Now removal clears the retained
messages it left (status, first boot, Home Assistant discovery), and a removed name's
reports are ignored until it enrolls again. A real mosquitto as `broker init` sets it up
and a real `kedge-cloud-api serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.discovery import discovery_messages
from cloud_api.fleet.store import SqliteFleetStore
from tests.harness.cloud_api import Api
from tests.harness.fleet import health
from tests.harness.fleet_api import board_for, ingest_connected, serve, stop
from tests.harness.mosquitto import Mosquitto, Recorder
from tests.harness.wait import wait_for

pytestmark = pytest.mark.faults


def row(api: Api, name: str) -> dict[str, Any] | None:
    items = api.call("GET", "/api/v1/nodes", token=api.token)[2]["items"]
    return next((n for n in items if n["node"] == name), None)


def retained(broker: Mosquitto, *topics: str) -> list[str]:
    """The topics among `topics` the broker holds a retained message on."""
    seen = Recorder(broker, *topics, "test/marker")
    try:
        # Retained messages come right after the subscription: a marker published after
        # it arrives after them.
        seen.publish("test/marker", b"end")
        wait_for(lambda: seen.on("test/marker"), timeout=10, what="the marker")
        return sorted({t for t, p, kept in seen.messages if kept and p})
    finally:
        seen.close()


def test_a_removed_board_stays_removed(tmp_path: Path, broker: Mosquitto) -> None:
    api = serve(tmp_path, broker)
    ingest_connected(api)
    board = board_for(broker, "rk3000-1")
    try:
        for topic, config in discovery_messages(board.topics, "homeassistant", 30):
            board.publish_raw(topic, config.encode(), retain=True)
        board.send("health", health(board.node))
        wait_for(lambda: row(api, board.node), timeout=20, what="the board's row")
        left = [
            board.topics.status,
            *(t for t, _ in discovery_messages(board.topics, "homeassistant", 30)),
        ]
        assert retained(broker, *left) == sorted(left)

        status, _, done = api.call("DELETE", f"/api/v1/nodes/{board.node}", token=api.token)
        assert (status, done["forgotten"], done["broker_identity_removed"]) == (200, True, True), (
            done
        )
        wait_for(
            lambda: not retained(broker, *left), timeout=20, what="the retained messages cleared"
        )
    finally:
        board.close()
        stop(api)

    # A copy of the board still running under a shared account, say: it says online.
    ghost = board_for(broker, "rk3000-1")  # a broker identity again, not an enrollment
    api = serve(tmp_path, broker)
    try:
        ingest_connected(api)
        ghost.send("health", health(ghost.node, cpu=77.0))
        other = board_for(broker, "rk3000-2")
        try:
            other.send("health", health(other.node, cpu=5.0))
            wait_for(lambda: row(api, other.node), timeout=20, what="another board's row")
        finally:
            other.close()
        assert row(api, "rk3000-1") is None
        # It enrolls again (the enrollment route marks it so): it is heard from then on.
        store = SqliteFleetStore(api.state / "fleet.db")
        try:
            store.enrolled("rk3000-1")
        finally:
            store.close()
        ghost.send("health", health(ghost.node, cpu=78.0))
        wait_for(
            lambda: (r := row(api, "rk3000-1")) and r["cpu_percent"] == 78.0,
            timeout=20,
            what="the board heard again after enrolling",
        )
    finally:
        ghost.close()
        stop(api)

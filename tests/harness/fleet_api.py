"""A fleet view under test: a TLS mosquitto as `broker init` sets it up, boards enrolled
in the API's database, and `kedge-cloud-api serve` reading their reports."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from cloud_api.store import Board as StoredBoard
from cloud_api.store import Store
from tests.harness.cloud_api import Api, start
from tests.harness.fleet import Board
from tests.harness.http import get_text
from tests.harness.mosquitto import Mosquitto
from tests.harness.sealing import TEST_COMMAND_KEY
from tests.harness.wait import wait_for


def stop(api: Api) -> None:
    """SIGTERM, and the exit waited for."""
    if api.proc.poll() is None:
        api.proc.send_signal(signal.SIGTERM)
        api.proc.wait(30)


def board_for(broker: Mosquitto, name: str) -> Board:
    """A board connected with the identity enrollment gives it."""
    assert broker.identities is not None
    return Board(broker.port, name, auth=broker.identities.board(name))


def enroll_here(state: Path, *nodes: str) -> None:
    """Boards as enrollment leaves them in the API's database: with their command key."""
    state.mkdir(parents=True, exist_ok=True)
    store = Store(state / "kedge.db")
    for node in nodes:
        store.record_board(
            StoredBoard(node, "arm64", "0.1.0", time.time(), None, None, TEST_COMMAND_KEY)
        )
    store.close()


def serve(tmp_path: Path, broker: Mosquitto, **fleet: Any) -> Api:
    enroll_here(tmp_path / "state", "rk3000-1", "rk3000-2")
    settings = {"stale_after_s": 30, "batch_wait_s": 0.05, **fleet}
    config = tmp_path / "cloud-api.toml"
    # [mqtt] and [broker] come from broker init's record in the state directory.
    mqtt = "" if broker.identities else f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\n\n'
    config.write_text(mqtt + "[fleet]\n" + "".join(f"{k} = {v!r}\n" for k, v in settings.items()))
    return start(tmp_path / "state", "--config", str(config))


def ingest_connected(api: Api) -> None:
    """Wait until the API's ingest has subscribed: a report published before its first
    subscription would reach no one."""

    def connected() -> bool:
        status, text = get_text(api.url + "/metrics", api.token)
        return status == 200 and "kedge_ingest_connected 1" in text.splitlines()

    wait_for(connected, timeout=30, what="the API's ingest connected")

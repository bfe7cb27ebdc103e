"""The fleet view's fixtures for the cloud tests: a broker as `broker init` sets it up,
`kedge-cloud-api serve` reading it, two boards reporting through it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.cloud_api import Api
from tests.harness.fleet import Board
from tests.harness.fleet_api import board_for, serve, stop
from tests.harness.mosquitto import Mosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """As `kedge-cloud-api broker init` sets it up for the API's state directory: TLS, one
    identity per board, no anonymous access."""
    m = Mosquitto(tmp_path / "mosquitto", state_dir=tmp_path / "state").start()
    yield m
    m.stop()


@pytest.fixture
def api(tmp_path: Path, broker: Mosquitto) -> Iterator[Api]:
    a = serve(tmp_path, broker)
    yield a
    stop(a)


@pytest.fixture
def boards(broker: Mosquitto) -> Iterator[dict[str, Board]]:
    made = {name: board_for(broker, name) for name in ("rk3000-1", "rk3000-2")}
    yield made
    for b in made.values():
        b.close()

"""What one board can make the broker keep (issue 25, finding 6): it used to publish
retained Home Assistant discovery under any two topic levels of its choosing, 256 KiB
each — mosquitto went from 10 MB to 207 MB in 6 s and stayed there. Now a board may
publish discovery only on the topics the agent announces (kedge.wire.discovery.ENTITIES,
each by name) and nothing over 64 KiB. A real mosquitto as `broker init` sets it up."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.discovery import discovery_messages
from kedge.wire import Topics
from kedge.wire.discovery import ENTITIES, discovery_topics
from tests.harness.fleet import Board
from tests.harness.fleet_api import board_for
from tests.harness.mosquitto import Mosquitto, Recorder
from tests.harness.wait import wait_for

pytestmark = pytest.mark.faults
NOT_AUTHORIZED = 0x87
JUNK = 60 * 1024


@pytest.fixture
def board(tmp_path: Path) -> Iterator[tuple[Mosquitto, Board]]:
    broker = Mosquitto(tmp_path / "mosquitto", state_dir=tmp_path / "state").start()
    b = board_for(broker, "rk3000-1")
    yield broker, b
    b.close()
    broker.stop()


def rss_kib(broker: Mosquitto) -> int:
    assert broker.proc is not None
    for line in Path(f"/proc/{broker.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_the_agent_announces_exactly_the_topics_the_broker_allows() -> None:
    sent = [t for t, _ in discovery_messages(Topics("kedge", "rk3000-1.lab"), "homeassistant", 30)]
    assert sent == discovery_topics("homeassistant", "rk3000-1.lab")
    assert len(sent) == len(ENTITIES)
    assert all("/kedge_rk3000-1_lab/" in t for t in sent)


def test_a_board_cannot_retain_discovery_of_its_own_choosing(
    board: tuple[Mosquitto, Board],
) -> None:
    broker, b = board
    # Each refused publish also costs the board its connection (mosquitto 2.0): a few
    # tries show the rule; the attack needed no more than topics of its own choosing.
    junk = [
        "homeassistant/sensor/kedge_rk3000-1/junk1/config",
        "homeassistant/sensor/kedge_rk3000-1/junk2/config",
        "homeassistant/x1/kedge_rk3000-1/cpu/config",  # a component kedge never uses
        "homeassistant/sensor/kedge_rk3000-2/cpu/config",  # another board's
    ]
    assert [b.publish_raw(t, b"x" * JUNK, retain=True) for t in junk] == [NOT_AUTHORIZED] * 4
    announced = discovery_topics("homeassistant", "rk3000-1")[0]
    assert b.publish_raw(announced, b"{}", retain=True) < 0x80  # success (0x10: nobody listens)
    seen = Recorder(broker, "homeassistant/#")
    try:
        wait_for(lambda: seen.on(announced), timeout=10, what="the announced topic retained")
        assert {t for t, _, retained in seen.messages if retained} == {announced}
    finally:
        seen.close()


def test_an_announced_topic_takes_a_config_but_nothing_huge(board: tuple[Mosquitto, Board]) -> None:
    broker, b = board
    topic, config = discovery_messages(b.topics, "homeassistant", 30)[0]
    assert b.publish_raw(topic, config.encode(), retain=True) < 0x80
    before = rss_kib(broker)
    for _ in range(3):
        # Over message_size_limit (65536): mosquitto drops it unacknowledged.
        wait_for(b.client.is_connected, timeout=20, what="the board connected")
        info = b.client.publish(topic, b"x" * 200 * 1024, qos=1, retain=True)
        with contextlib.suppress(RuntimeError, ValueError):
            info.wait_for_publish(timeout=2)
        assert b.acks.get(info.mid, 0x80) >= 0x80
    seen = Recorder(broker, topic)
    try:
        wait_for(lambda: seen.on(topic), timeout=10, what="the retained config")
        assert seen.on(topic) == [config.encode()]
    finally:
        seen.close()
    assert rss_kib(broker) - before < 8 * 1024

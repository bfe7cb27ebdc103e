"""kedge.mqtt: what a connection failure means, the backoff, and the client's timers."""

from __future__ import annotations

import inspect
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from kedge import mqtt
from kedge.errors import ConfigError
from kedge.mqtt import Backoff, Endpoint, LinkFailure, classify


def _connack(code: int) -> Exception:
    error = Exception("refused")
    error.rc = ReasonCode(PacketTypes.CONNACK, identifier=code)  # type: ignore[attr-defined]
    return error


@pytest.mark.parametrize(
    ("code", "reason"),
    [(0x86, "bad user name or password"), (0x87, "not authorised"), (0x8A, "banned"),
     (0x85, "client identifier not valid")],
)  # fmt: skip
def test_refusals_are_named(code: int, reason: str) -> None:
    assert classify(_connack(code)) == LinkFailure("refused", reason)


def test_busy_broker_and_network_errors_are_not_refusals() -> None:
    assert classify(_connack(0x88)).kind == "network"  # server unavailable: try again soon
    assert classify(ConnectionRefusedError(111, "Connection refused")).kind == "network"


def test_refused_backoff_is_long_and_capped() -> None:
    slow = Backoff(30.0, 600.0)
    delays = [slow.next() for _ in range(12)]
    assert 15.0 <= delays[0] <= 30.0
    assert max(delays) <= 600.0
    assert delays[-1] >= 300.0


async def test_the_keepalive_timer_wakes_a_quarter_keepalive_not_every_second() -> None:
    # aiomqtt's own loop wakes every second; ours overrides it. Should aiomqtt rename the
    # method, this fails instead of the daemon silently burning the CPU again.
    assert inspect.iscoroutinefunction(aiomqtt.Client._misc_loop)
    made = mqtt.client(Endpoint("127.0.0.1", 1883, "t", keepalive_s=60))
    assert type(made)._misc_loop is not aiomqtt.Client._misc_loop
    assert made.misc_interval_s == 15.0  # type: ignore[attr-defined]


def test_tls_files_that_do_not_load_are_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "ca.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="mqtt TLS files"):
        mqtt.tls_context(Endpoint("h", 8883, "t", tls=True, ca_file=bad))

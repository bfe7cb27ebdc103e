"""Re-flash recognition that what a board broadcasts cannot spoof (issue 25, finding 5):
a serial-less board's name, identity and command channel used to go to anyone holding one
of its MAC addresses — which it sends in every Ethernet frame — and any valid secret.
Now a MAC alone parks the request for the admin; a serial still recognises the board.
Against the real API on the simulated master (tests/harness/master.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kedge import command_auth
from tests.harness.master import Master, install_cloudcore, master

pytestmark = pytest.mark.netns
MAC = "0642ac110002"


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Master]:
    with master(tmp_path) as m:
        m.start()
        install_cloudcore(m)
        yield m


def secret(cloud: Master) -> str:
    status, body = cloud.call("POST", "/api/v1/enrollment-secrets", {"uses": 5})
    assert status == 201, body
    return str(body["secret"])


def enroll(cloud: Master, value: str, machine: str, **hardware: Any) -> tuple[int, Any]:
    body = {
        "node_name": "rk3000-1",
        "secret": value,
        "arch": "arm64",
        "agent_version": "0.1.0",
        "machine_id": machine,
        **hardware,
    }
    return cloud.call("POST", "/api/v1/enroll", body, admin=False)


def test_a_copied_mac_parks_the_request_and_hands_out_nothing(cloud: Master) -> None:
    value = secret(cloud)
    status, first = enroll(cloud, value, "a" * 64, macs=[MAC])
    assert status == 200, first
    # The attacker: another machine, no serial, the board's MAC, a valid secret.
    status, answer = enroll(cloud, value, "b" * 64, macs=[MAC, "02aabbccddee"])
    assert status == 202, answer
    assert "known only by a MAC address" in answer["reason"]
    assert not {"token", "mqtt"} & set(answer)
    waiting = cloud.call("GET", "/api/v1/boards/pending")[1]
    assert [(p["node_name"], p["macs"]) for p in waiting] == [("rk3000-1", [MAC, "02aabbccddee"])]
    # Only the admin's yes re-issues it.
    assert cloud.call("POST", "/api/v1/boards/rk3000-1/approve")[0] == 200
    status, again = enroll(cloud, value, "b" * 64, macs=[MAC, "02aabbccddee"])
    assert status == 200, again


def test_a_serial_still_recognises_a_reflashed_board(cloud: Master) -> None:
    value = secret(cloud)
    assert enroll(cloud, value, "a" * 64, serial="rk30000a1b2c3d", macs=[MAC])[0] == 200
    status, answer = enroll(cloud, value, "b" * 64, serial="rk30000a1b2c3d", macs=[MAC])
    assert status == 200, answer
    status, answer = enroll(cloud, value, "c" * 64, serial="rk3000ffff0000", macs=[MAC])
    assert (status, answer["error"]["code"]) == (409, "name_taken")


def test_a_forget_node_proof_is_good_once(cloud: Master) -> None:
    """Issue 25, finding 7: the proof used to be replayable for its whole 5 minutes,
    deleting the Node again after the board had joined."""
    status, enrolled = enroll(cloud, secret(cloud), "a" * 64, macs=[MAC])
    assert status == 200, enrolled
    at = int(time.time())
    made = command_auth.proof(
        "rk3000-1", at, enrolled["command_key"], command_auth.FORGET_NODE_DOMAIN
    )
    body = {"node_name": "rk3000-1", "agent_version": "0.1.0", "proof_at": at, "proof": made}
    status, first = cloud.call("POST", "/api/v1/forget-node", body, admin=False)
    assert status == 200, first
    status, again = cloud.call("POST", "/api/v1/forget-node", body, admin=False)
    assert (status, again["error"]["code"]) == (401, "not_proven")
    assert "this proof was already used" in again["error"]["message"]

"""One host, or fifty, holding a thousand connections to the cloud API must not lock out
the admin or a board (issue 25, finding 2: 512 keep-alive connections each sending a
GET /healthz every 10 s used to hold every slot; 0 of 42 legitimate requests got in).

The server runs with its default limits; the attacker is its own process
(tests/harness/flood.py); the legitimate clients connect from addresses of their own on
the loopback range, one fresh connection per try, and a try succeeds when the expected
answer is in within 1 s."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.cloud_api import Api, start
from tests.harness.fleet_api import stop
from tests.harness.flood import enroll_body, flood, request, tries
from tests.harness.wait import wait_for

pytestmark = pytest.mark.faults
ATTACKERS = 1000
TRIES = 100


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    config = tmp_path / "cloud-api.toml"
    config.write_text("")  # the defaults: 512 connections, 64 per address
    a = start(tmp_path / "state", "--config", str(config))
    yield a
    stop(a)


def open_connections(api: Api) -> int:
    return sum(
        1
        for fd in Path(f"/proc/{api.proc.pid}/fd").iterdir()
        if fd.readlink().as_posix().startswith("socket:")
    )


@pytest.mark.parametrize(
    ("addresses", "shape"),
    [(1, "keepalive"), (50, "keepalive"), (50, "partial"), (50, "body")],
    ids=[
        "1-address-keepalive",
        "50-addresses-keepalive",
        "50-addresses-partial",
        "50-addresses-body",
    ],
)
def test_a_flood_locks_out_neither_the_admin_nor_a_board(
    api: Api, addresses: int, shape: str
) -> None:
    status, _, made = api.call(
        "POST", "/api/v1/enrollment-secrets", {"uses": 1, "approval": "pending"}, token=api.token
    )
    assert status == 201, made
    # The attack as it is in place: the server holds what one address may, or its limit.
    held = 60 if addresses == 1 else 500
    with flood(
        api.url,
        first_source="127.0.2.1",
        addresses=addresses,
        connections=ATTACKERS,
        shape=shape,
        duration_s=90,
    ):
        wait_for(lambda: open_connections(api) >= held, timeout=30, what=f"{held} attackers in")
        admin = tries(
            TRIES,
            lambda i: request(api.url + "/api/v1/nodes", token=api.token, source="127.0.0.1"),
            200,
        )
        # A board that needs approval: the secret is checked and the request parked (202).
        board = tries(
            TRIES,
            lambda i: request(
                api.url + "/api/v1/enroll",
                data=enroll_body(made["secret"], "rk3000-1"),
                source=f"127.0.1.{i + 1}",
            ),
            202,
        )
    print(f"{addresses} address(es), {shape}: admin {admin}; board enroll {board}")
    assert admin.ok >= 99, f"admin GET /api/v1/nodes: {admin}"
    assert board.ok >= 99, f"board enroll: {board}"

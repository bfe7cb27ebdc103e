"""Approval that stays usable (issue 25, finding 4): one single-use `--approval pending`
secret used to park 1,000 junk names in 17 s, and from then on every board needing
approval got 503 for good, also after the secret was revoked. A real `kedge-cloud-api
serve`; the boards are HTTP clients from addresses of their own (the enrollment throttle
is per address)."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cloud_api.store import PendingBoard, PendingFull, Store
from tests.harness.cloud_api import SERVER, Api, start
from tests.harness.fleet_api import stop
from tests.harness.flood import enroll_body, request

pytestmark = pytest.mark.faults


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    config = tmp_path / "cloud-api.toml"
    config.write_text("pending_per_secret = 3\n")
    a = start(tmp_path / "state", "--config", str(config))
    yield a
    stop(a)


def secret(api: Api, **spec: Any) -> dict[str, Any]:
    status, _, body = api.call(
        "POST", "/api/v1/enrollment-secrets", {"approval": "pending", **spec}, token=api.token
    )
    assert status == 201, body
    return dict(body)


def ask(api: Api, value: str, node: str, source: int) -> int:
    return request(
        api.url + "/api/v1/enroll", data=enroll_body(value, node), source=f"127.0.3.{source}"
    )


def refusal(api: Api, value: str, node: str) -> dict[str, Any]:
    """The error an enrollment request gets (from the test's own address)."""
    body = {"node_name": node, "secret": value, "arch": "arm64", "agent_version": "0"}
    status, _, answer = api.call("POST", "/api/v1/enroll", body)
    assert status >= 400, answer
    return dict(answer["error"])


def pending(api: Api) -> dict[str, dict[str, Any]]:
    status, _, body = api.call("GET", "/api/v1/boards/pending", token=api.token)
    assert status == 200
    return {p["node_name"]: p for p in body}


def test_a_single_use_secret_parks_one_board_and_no_junk_after_it(api: Api) -> None:
    one_use = secret(api, uses=1)
    assert ask(api, one_use["secret"], "junk-1", 1) == 202
    assert [ask(api, one_use["secret"], f"junk-{i}", i) for i in range(2, 6)] == [503] * 4
    error = refusal(api, one_use["secret"], "junk-9")
    assert error["code"] == "too_many_pending"
    assert "1 boards already wait on this enrollment secret" in error["message"]
    # Revoked: its waiting boards go with it, and a new secret parks a real board at once.
    assert (
        api.call("DELETE", f"/api/v1/enrollment-secrets/{one_use['id']}", token=api.token)[0] == 200
    )
    assert pending(api) == {}
    fresh = secret(api, uses=5)
    assert ask(api, fresh["secret"], "rk3000-1", 10) == 202
    assert list(pending(api)) == ["rk3000-1"]


def test_a_secret_parks_at_most_pending_per_secret(api: Api) -> None:
    many = secret(api)  # unlimited uses: the setting bounds it (3 here)
    assert [ask(api, many["secret"], f"b-{i}", i) for i in range(5)] == [202, 202, 202, 503, 503]
    assert ask(api, many["secret"], "b-0", 20) == 202  # one already waiting asks again: fine
    other = secret(api)
    assert ask(api, other["secret"], "c-1", 21) == 202  # the cap is per secret


def test_a_refused_board_is_told_so_and_approval_undoes_it(api: Api) -> None:
    s = secret(api)
    assert ask(api, s["secret"], "junk-1", 1) == 202
    status, _, refused = api.call("POST", "/api/v1/boards/junk-1/refuse", token=api.token)
    assert (status, refused["refused"]) == (200, True)
    error = refusal(api, s["secret"], "junk-1")
    assert error["code"] == "refused"
    assert "kedge-cloud-api boards approve junk-1" in error["message"]
    # A refused entry does not hold a place of the secret's.
    assert [ask(api, s["secret"], f"b-{i}", 30 + i) for i in range(3)] == [202] * 3
    assert api.call("POST", "/api/v1/boards/nobody/refuse", token=api.token)[0] == 404
    assert api.call("POST", "/api/v1/boards/junk-1/approve", token=api.token)[2]["refused"] is False


def test_the_cli_refuses_a_board(api: Api) -> None:
    s = secret(api)
    assert ask(api, s["secret"], "rk3000-7", 1) == 202
    token = ["--api", api.url, "--token-file", str(api.state / "admin.token")]
    out = subprocess.run(
        [SERVER, "boards", "refuse", "rk3000-7", *token],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("refused rk3000-7")
    listed = subprocess.run(
        [SERVER, "boards", "pending", *token],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "refused" in listed.stdout


def test_entries_not_asked_about_expire(tmp_path: Path) -> None:
    store = Store(tmp_path / "kedge.db")
    try:
        _, made = store.create_secret(ttl_s=None, uses=None, note="")
        now = time.time()
        for name, seen in (("old", now - 8 * 86400), ("new", now)):
            store.park(
                PendingBoard(name, made.id, None, (), None, "arm64", "why", seen, seen, None)
            )
        assert [p.node_name for p in store.pendings()] == ["new"]

        def park(name: str) -> None:
            board = PendingBoard(name, made.id, None, (), None, "arm64", "why", now, now, None)
            store.park(board, per_secret=2)

        park("x1")  # "new" and x1: two on this secret
        with pytest.raises(PendingFull):
            park("x2")
    finally:
        store.close()
    assert (
        sqlite3.connect(tmp_path / "kedge.db")
        .execute("SELECT count(*) FROM pending_boards")
        .fetchone()[0]
        == 2
    )

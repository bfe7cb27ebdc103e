"""The cloud API against hostile clients and an unlucky disk: a real `kedge-cloud-api
serve` process on loopback (docs/robustness.md lists the limits these hold)."""

from __future__ import annotations

import contextlib
import http.client
import json
import resource
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_api.auth import bearer_matches, load_or_create_admin_token
from cloud_api.throttle import Throttle
from tests.harness.cloud_api import SERVER, Api, start
from tests.harness.procs import free_port
from tests.harness.wait import wait_for

pytestmark = pytest.mark.faults
LIMITS = """
max_connections = 32
header_timeout_s = 2.0
body_timeout_s = 2.0
enroll_rate_per_s = 0.5
enroll_burst = 5
long_requests_max = 3
long_requests_per_token = 2
"""


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    config = tmp_path / "cloud-api.toml"
    config.write_text(LIMITS)
    a = start(tmp_path / "state", "--config", str(config))
    yield a
    if a.proc.poll() is None:
        a.proc.send_signal(signal.SIGTERM)
        a.proc.wait(30)


def serve(state: Path) -> subprocess.CompletedProcess[str]:
    """`kedge-cloud-api serve` that is expected to refuse to start."""
    argv = [SERVER, "serve", "--listen", f"127.0.0.1:{free_port()}", "--state-dir", str(state)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def raw_request(api: Api, request: bytes) -> tuple[int, bytes]:
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, response.read()


# -- the admin token -----------------------------------------------------------------
@pytest.mark.parametrize(
    "header",
    ["Bearer \u00a0", "Bearer \u3000", "Bearer ", "Bearer \t", "Bearer", "bearer ", "Basic x"],
)
def test_blank_or_unicode_space_credentials_never_match(header: str) -> None:
    assert not bearer_matches(header, "t" * 43)
    # Even against an empty stored token, which the service refuses to start with.
    assert not bearer_matches(header, "")


def test_the_right_credential_matches() -> None:
    assert bearer_matches("Bearer " + "t" * 43, "t" * 43)
    assert bearer_matches("Bearer " + "t" * 43 + " ", "t" * 43)
    # RFC 7235: the scheme is case-insensitive (issue 25, finding 7).
    assert bearer_matches("bearer " + "t" * 43, "t" * 43)
    assert bearer_matches("BEARER " + "t" * 43, "t" * 43)
    assert not bearer_matches("bearer " + "T" * 43, "t" * 43)  # the token itself is not


def test_a_lower_case_scheme_is_accepted_by_the_server(api: Api) -> None:
    status, _, _ = api.call(
        "GET", "/api/v1/enrollment-secrets", headers={"Authorization": f"bearer {api.token}"}
    )
    assert status == 200


@pytest.mark.parametrize("header", [b"Bearer \xc2\xa0", b"Bearer \xe3\x80\x80", b"Bearer \xff\xfe"])
def test_non_ascii_authorization_is_401_not_500(api: Api, header: bytes) -> None:
    request = (
        b"POST /api/v1/enrollment-secrets HTTP/1.1\r\nHost: x\r\nAuthorization: "
        + header
        + b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    status, body = raw_request(api, request)
    assert status == 401, body
    assert json.loads(body)["error"]["code"] == "unauthorized"
    assert "Traceback" not in (api.state.parent / "server.log").read_text()


@pytest.mark.parametrize("content", ["", "\n", "short\n", "\u00a0" * 40])
def test_serve_refuses_an_empty_or_short_admin_token(tmp_path: Path, content: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "admin.token").write_text(content)
    proc = serve(state)
    assert proc.returncode == 2, proc.stderr
    assert f"the admin token {state / 'admin.token'} is empty, short or damaged" in proc.stderr
    assert "remove the file and start again" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_full_disk_leaves_no_empty_token_behind(tmp_path: Path) -> None:
    """The token is written to a temporary file and renamed: ENOSPC leaves nothing."""
    if not Path("/proc/self/ns").exists() or resource.getrlimit(resource.RLIMIT_FSIZE)[0] == 0:
        pytest.skip("needs /proc")
    state = tmp_path / "full"
    state.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(state)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        filler = state / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as fh:
            fh.write(b"x" * 128 * 1024)
        proc = serve(state)
        assert proc.returncode == 2, proc.stderr
        assert "cannot create the admin token" in proc.stderr
        assert "No space left on device" in proc.stderr
        assert not (state / "admin.token").exists()
        assert [p.name for p in state.iterdir()] == ["filler"]
        filler.unlink()
        token = load_or_create_admin_token(state)
        assert len(token) >= 32
        assert stat.S_IMODE((state / "admin.token").stat().st_mode) == 0o600
    finally:
        subprocess.run(["umount", str(state)], check=False, timeout=30)


# -- malformed bodies ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (b'{"node_name": ' + b"7" * 5000 + b"}", "Exceeds the limit"),
        (b"\xff\xfe{}", "not JSON"),
    ],
)
def test_malformed_enroll_bodies_are_400_without_traceback(
    api: Api, body: bytes, says: str
) -> None:
    status, _, answer = api.call("POST", "/api/v1/enroll", raw=body)
    assert status == 400, answer
    assert answer["error"]["code"] == "bad_json"
    assert says in answer["error"]["message"]
    assert "Traceback" not in (api.state.parent / "server.log").read_text()


def test_a_body_that_never_finishes_is_408(api: Api) -> None:
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        sock.sendall(
            b"POST /api/v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert response.status == 408
        assert json.loads(response.read())["error"]["code"] == "body_timeout"


# -- connections -------------------------------------------------------------------------
def _slow(api: Api, count: int) -> list[socket.socket]:
    host, port = api.url.removeprefix("http://").split(":")
    socks = []
    for _ in range(count):
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(b"POST /api/v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Le")
        socks.append(s)
    return socks


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.01)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_slow_connections_are_cut_and_health_still_answers(api: Api) -> None:
    """200 connections sending part of a request (max_connections 32, headers within
    2 s): /healthz answers at once, every slow one is closed, and the log stays small."""
    socks = _slow(api, 200)
    try:
        wait_for(lambda: api.call("GET", "/healthz")[0] == 200, timeout=10, what="/healthz")
        wait_for(
            lambda: all(_closed_by_server(s) for s in socks),
            timeout=20,
            what="the server to close every slow connection",
        )
        fds = len(list(Path(f"/proc/{api.proc.pid}/fd").iterdir()))
        assert fds < 32 + 64, fds
    finally:
        for s in socks:
            s.close()
    assert api.call("GET", "/healthz")[0] == 200
    log = (api.state.parent / "server.log").read_text()
    assert len(log) < 20_000, len(log)
    assert "Too many open files" not in log
    assert log.count("http.slow_connection_cut") <= 2  # one line a minute at most


def test_an_ordinary_keep_alive_client_is_not_cut(api: Api) -> None:
    host, port = api.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        for _ in range(3):
            conn.request("GET", "/healthz")
            assert conn.getresponse().read()
    finally:
        conn.close()


# -- enrollment flood ----------------------------------------------------------------------
def test_enrollment_is_throttled_per_address_with_retry_after(api: Api) -> None:
    body = {"node_name": "board-1", "secret": "x" * 32, "arch": "arm64", "agent_version": "0"}
    statuses = []
    for _ in range(12):
        status, headers, answer = api.call("POST", "/api/v1/enroll", body)
        statuses.append(status)
        if status == 429:
            assert int(headers["Retry-After"]) >= 1
            assert answer["error"]["code"] == "too_many_requests"
    assert statuses[:5] == [401] * 5  # the burst
    assert statuses[5:] == [429] * 7


def test_throttle_refills_at_its_rate() -> None:
    now = [0.0]
    throttle = Throttle(rate_per_s=2.0, burst=3, clock=lambda: now[0])
    assert [throttle.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert throttle.take("a") == pytest.approx(0.5)
    assert throttle.take("b") == 0.0  # per address
    now[0] += 0.5
    assert throttle.take("a") == 0.0
    assert throttle.retry_after(0.01) == "1"


def test_the_throttle_table_is_bounded() -> None:
    throttle = Throttle(rate_per_s=1.0, burst=1, clock=time.monotonic)
    for n in range(10_050):
        throttle.take(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle._buckets) == 10_000


# -- requests that stay open ---------------------------------------------------------------
def _stream(api: Api, token: str) -> tuple[socket.socket, int]:
    """GET /api/v1/events held open; the socket and the status line's code."""
    host, port = api.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(
        f"GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    return sock, int(sock.recv(64).split(b" ")[1])


def test_event_streams_are_bounded_per_token_and_in_all(api: Api) -> None:
    """long_requests_per_token 2, long_requests_max 3 (LIMITS above)."""
    held: list[socket.socket] = []
    try:
        for _ in range(2):
            sock, status = _stream(api, api.token)
            held.append(sock)
            assert status == 200
        sock, status = _stream(api, api.token)
        held.append(sock)
        assert status == 429
        status, _, body = api.call("GET", "/api/v1/events", token=api.token)
        assert (status, body["error"]["code"]) == (429, "too_many_streams")
        assert "at most 2 per credential and 3 in all" in body["error"]["message"]
        # A wait past the bound answers at once, as the command stands (here: none).
        began = time.monotonic()
        status, _, _ = api.call(
            "GET", "/api/v1/nodes/rk3000-1/commands/x1?wait=30", token=api.token
        )
        assert status == 404
        assert time.monotonic() - began < 5
    finally:
        for s in held:
            s.close()
    # Closed streams give their slots back at once.

    def slot_given_back() -> bool:
        sock, status = _stream(api, api.token)
        sock.close()
        return status == 200

    wait_for(slot_given_back, timeout=5, what="a slot given back")

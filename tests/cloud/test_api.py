"""kedge-cloud-api serve as a real process: health, auth, secrets, errors, OpenAPI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_api.app import ROUTES, create_app, openapi_document
from cloud_api.fleet.store import SqliteFleetStore
from cloud_api.settings import CloudSettings
from cloud_api.store import Store
from kedge.host import Host
from tests.harness.cloud_api import SERVER, Api, start
from tests.harness.procs import free_port
from tests.harness.wait import wait_for


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    config = tmp_path / "cloud-api.toml"
    config.write_text("")
    a = start(tmp_path / "state", "--config", str(config))
    yield a
    if a.proc.poll() is None:
        a.proc.send_signal(signal.SIGTERM)
        a.proc.wait(30)


@pytest.fixture(autouse=True)
def _no_cloud_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEDGE_CLOUD_CONFIG", raising=False)


def test_health_readiness_and_request_ids(api: Api) -> None:
    status, headers, body = api.call("GET", "/healthz")
    assert (status, body["status"]) == (200, "ok")
    assert len(headers["X-Request-Id"]) == 16
    status, headers, body = api.call("GET", "/readyz", headers={"X-Request-Id": "trace-42"})
    assert (status, body, headers["X-Request-Id"]) == (200, {"status": "ready"}, "trace-42")


def test_admin_token_is_created_0600_and_kept(api: Api, tmp_path: Path) -> None:
    path = api.state / "admin.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    first = api.token
    api.proc.send_signal(signal.SIGTERM)
    assert api.proc.wait(30) == 0
    again = start(api.state)
    try:
        assert again.token == first
    finally:
        again.proc.send_signal(signal.SIGTERM)
        again.proc.wait(30)


@pytest.mark.parametrize("token", [None, "wrong", ""])
def test_admin_routes_need_the_token_and_say_nothing_more(api: Api, token: str | None) -> None:
    status, _, body = api.call("POST", "/api/v1/enrollment-secrets", {"uses": 1}, token=token)
    assert status == 401
    assert body == {
        "error": {"code": "unauthorized", "message": "missing or wrong credentials", "details": {}}
    }


def test_secrets_are_shown_once_and_stored_hashed(api: Api) -> None:
    status, _, created = api.call(
        "POST",
        "/api/v1/enrollment-secrets",
        {"ttl_s": 3600, "uses": 4, "note": "plant 3"},
        token=api.token,
    )
    assert status == 201
    assert set(created) == {"id", "secret", "expires_at", "uses_left"}
    assert created["uses_left"] == 4
    status, _, listed = api.call("GET", "/api/v1/enrollment-secrets", token=api.token)
    assert status == 200
    assert [s["id"] for s in listed] == [created["id"]]
    assert "secret" not in listed[0]
    db = b"".join(p.read_bytes() for p in api.state.glob("kedge.db*"))
    assert created["secret"].encode() not in db
    api.proc.send_signal(signal.SIGTERM)
    api.proc.wait(30)
    log = (api.state.parent / "server.log").read_bytes()
    assert b'"event": "secret.created"' in log
    assert created["secret"].encode() not in log
    assert api.token.encode() not in log


def test_bad_requests_get_the_one_error_shape(api: Api) -> None:
    status, headers, body = api.call(
        "POST", "/api/v1/enrollment-secrets", raw=b"{not json", token=api.token
    )
    assert status == 400
    assert body["error"]["code"] == "bad_json"
    assert headers["X-Request-Id"]
    status, _, body = api.call(
        "POST", "/api/v1/enrollment-secrets", {"uses": 0, "colour": "red"}, token=api.token
    )
    assert status == 422
    assert body["error"]["code"] == "invalid"
    assert set(body["error"]["details"]) == {"uses", "colour"}
    status, _, body = api.call("GET", "/api/v1/nothing-here")
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, _, body = api.call("DELETE", "/healthz")
    assert (status, body["error"]["code"]) == (405, "method_not_allowed")


def test_openapi_matches_the_routes(api: Api, tmp_path: Path) -> None:
    status, _, served = api.call("GET", "/api/v1/openapi.json")
    assert status == 200
    assert served == json.loads(json.dumps(openapi_document()))
    assert served["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in served["paths"].items() for m in ops}
    store, fleet = Store(tmp_path / "db"), SqliteFleetStore(tmp_path / "fleet.db")
    app = create_app(CloudSettings(), store, "t", Host(), fleet)
    store.close()
    fleet.close()
    registered = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    assert documented == registered == {(r.method, r.path) for r in ROUTES}
    for path, ops in served["paths"].items():
        for op in ops.values():
            if "security" in op:
                assert "401" in op["responses"], path


def test_sigterm_stops_cleanly(api: Api) -> None:
    api.proc.send_signal(signal.SIGTERM)
    assert api.proc.wait(30) == 0


def test_bad_config_is_exit_2_with_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "cloud-api.toml"
    cfg.write_text('listen = "8080"\n')
    out = subprocess.run(
        [SERVER, "serve", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert (
        out.stderr
        == f"kedge-cloud-api: error: {cfg}: key 'listen': expected host:port, for example 0.0.0.0:8080, got '8080'\n"
    )


def _self_signed(directory: Path) -> tuple[Path, Path]:
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kedge-cloud-api")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "api.crt", directory / "api.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_with_a_private_ca_needs_ca_file(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    config = tmp_path / "cloud-api.toml"
    config.write_text(f'tls_cert_file = "{cert}"\ntls_key_file = "{key}"\n')
    port = free_port()
    state = tmp_path / "state"
    with (tmp_path / "server.log").open("ab") as log:
        proc = subprocess.Popen(
            [
                SERVER,
                "serve",
                "--config",
                str(config),
                "--listen",
                f"127.0.0.1:{port}",
                "--state-dir",
                str(state),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: (
                (state / "admin.token").exists()
                and b"serving" in (tmp_path / "server.log").read_bytes()
            ),
            timeout=30,
            what="the TLS API",
        )
        base = [
            SERVER,
            "secret",
            "list",
            "--api",
            f"https://127.0.0.1:{port}",
            "--token-file",
            str(state / "admin.token"),
        ]
        trusted = subprocess.run(
            [*base, "--ca-file", str(cert)], capture_output=True, text=True, timeout=60, check=False
        )
        assert (trusted.returncode, trusted.stdout) == (0, "")
        untrusted = subprocess.run(base, capture_output=True, text=True, timeout=60, check=False)
        assert untrusted.returncode == 1
        assert "certificate verify failed" in untrusted.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_tells_systemd_when_it_is_ready_and_stopping(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    got: list[str] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(1)

        def received(line: str) -> bool:
            with contextlib.suppress(TimeoutError):
                got.extend(sock.recv(4096).decode().splitlines())
            return line in got

        port = free_port()
        proc = subprocess.Popen(
            [SERVER, "serve", "--listen", f"127.0.0.1:{port}", "--state-dir", str(tmp_path / "s")],
            env={**os.environ, "NOTIFY_SOCKET": str(path)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(lambda: received("READY=1"), timeout=30, what="READY=1")
            assert f"STATUS=serving on 127.0.0.1:{port}" in got
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
                assert resp.status == 200  # READY came after the socket was listening
            proc.send_signal(signal.SIGTERM)
            wait_for(lambda: received("STOPPING=1"), timeout=30, what="STOPPING=1")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


def test_a_board_only_mqtt_key_in_the_cloud_config_is_refused(tmp_path: Path) -> None:
    # The cloud's [mqtt] is the shared broker settings; spool bounds are the board's.
    cfg = tmp_path / "cloud-api.toml"
    cfg.write_text('[mqtt]\nhost = "10.0.0.1"\nspool_max_bytes = 1000000\n')
    out = subprocess.run([SERVER, "serve", "--config", str(cfg)], capture_output=True, text=True,
                         timeout=60, check=False)  # fmt: skip
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1
    assert f"{cfg}: unknown key 'mqtt.spool_max_bytes'" in out.stderr

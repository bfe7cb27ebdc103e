"""Per-board broker identities against a real mosquitto set up by `kedge-cloud-api broker
init`: what the attacks of issue 14 tried with one shared account, tried again with two
enrolled boards A and B (docs/security.md lists each line these tests hold)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.harness import paho_client
from tests.harness.fleet import Board, health
from tests.harness.mosquitto import Auth, Mosquitto, Recorder
from tests.harness.sealing import sealed
from tests.harness.wait import wait_for

NOT_AUTHORIZED = 0x87
ACCEPTED = (0x00, 0x10)  # 0x10: accepted, no subscriber yet
CLOUD_API = str(Path(sys.executable).with_name("kedge-cloud-api"))


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    m = Mosquitto(tmp_path / "mosquitto", state_dir=tmp_path / "state").start()
    yield m
    m.stop()


@pytest.fixture
def seen(broker: Mosquitto) -> Iterator[Recorder]:
    r = Recorder(broker, "kedge/#", "homeassistant/#")
    yield r
    r.close()


@pytest.fixture
def pair(broker: Mosquitto) -> Iterator[tuple[Board, Board]]:
    assert broker.identities is not None
    a = Board(broker.port, "board-a", auth=broker.identities.board("board-a"))
    b = Board(broker.port, "board-b", auth=broker.identities.board("board-b"))
    yield a, b
    a.close()
    b.close()


def order(node: str, action: str) -> bytes:
    """A command sealed for `node` as the cloud API seals it."""
    now = datetime.now(UTC)
    body = {"id": f"{action}-1", "action": action, "issued_at": now.isoformat(),
            "expires_at": (now + timedelta(seconds=60)).isoformat(), "args": {}}  # fmt: skip
    return sealed(body, node).encode()


def attempt(
    broker: Mosquitto, auth: Auth, topic: str, payload: bytes, *, retain: bool = False
) -> int:
    """One publish at QoS 1 on a connection of its own: the PUBACK's reason code. (mosquitto
    2.0 drops a client after a publish it refused, so each attempt starts afresh.)"""
    assert auth.client_id is not None
    board = Board(broker.port, auth.client_id.removeprefix("kedge-"), auth=auth)
    try:
        return board.publish_raw(topic, payload, retain=retain)
    finally:
        board.close()


def connect(broker: Mosquitto, auth: Auth | None, client_id: str, host: str = "127.0.0.1") -> str:
    """Try a connection; the broker's answer ("Success", "Not authorized", …)."""
    answer: list[str] = []
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    if auth is not None:
        c.username_pw_set(auth.username, auth.password)
    assert broker.identities is not None
    c.tls_set(ca_certs=str(auth.ca if auth and auth.ca else broker.identities.record.ca_file))
    c.on_connect = lambda cl, u, f, rc, p=None: answer.append(str(rc))
    c.connect(host, broker.port, 10)
    c.loop_start()
    try:
        wait_for(lambda: answer, timeout=20, what=f"the broker's answer to {client_id}")
    finally:
        paho_client.release(c)
    return answer[0]


def test_a_board_cannot_speak_for_listen_to_or_command_another(
    broker: Mosquitto, pair: tuple[Board, Board], seen: Recorder
) -> None:
    a, b = pair
    wait_for(lambda: b"online" in seen.on("kedge/board-b/status"), timeout=20, what="B online")
    report = health("board-b").to_json().encode()
    # Each refused publish is answered 0x87 and the broker drops A's connection.
    assert a.auth is not None
    for leaf in ("health", "checks", "cmd/result"):
        assert attempt(broker, a.auth, f"kedge/board-b/{leaf}", report) == NOT_AUTHORIZED, leaf
    # A fake retained "offline" (or "online") for B is refused too.
    assert (
        attempt(broker, a.auth, "kedge/board-b/status", b"offline", retain=True) == NOT_AUTHORIZED
    )
    # No board publishes any command, its own included, retained or not.
    for target in ("board-b", "board-a"):
        command = order(target, "reset")
        assert attempt(broker, a.auth, f"kedge/{target}/cmd", command) == NOT_AUTHORIZED
        assert (
            attempt(broker, a.auth, f"kedge/{target}/cmd", command, retain=True) == NOT_AUTHORIZED
        )
    a = Board(broker.port, "board-a", auth=a.auth)  # the pair's A was taken over by the attempts
    # Listening to B's commands is refused at SUBSCRIBE.
    granted: list[int] = []
    a.client.on_subscribe = lambda c, u, mid, codes, p=None: granted.extend(r.value for r in codes)
    a.client.subscribe([("kedge/board-b/cmd", 1), ("kedge/#", 1)])
    wait_for(lambda: len(granted) == 2, timeout=20, what="the SUBACK")
    assert granted == [NOT_AUTHORIZED, NOT_AUTHORIZED]
    # B's own reports still arrive; nothing A tried reached anyone.
    assert b.publish_raw("kedge/board-b/health", report) in ACCEPTED
    wait_for(lambda: seen.on("kedge/board-b/health"), timeout=20, what="B's own report")
    assert seen.on("kedge/board-b/health") == [report]
    assert seen.on("kedge/board-b/checks") == seen.on("kedge/board-b/cmd/result") == []
    assert seen.on("kedge/board-b/cmd") == seen.on("kedge/board-a/cmd") == []
    assert seen.on("kedge/board-b/status") == [b"online"]
    assert b.commands == []
    assert a.commands == []
    a.close()


def test_the_cloud_api_identity_alone_commands_a_board(
    broker: Mosquitto, pair: tuple[Board, Board]
) -> None:
    _, b = pair
    assert broker.identities is not None
    cloud = broker.identities.cloud
    api = Board(broker.port, "api-as-board", auth=cloud, client_id="kedge_cloud-test")
    try:
        assert api.publish_raw("kedge/board-b/cmd", order("board-b", "ping")) in ACCEPTED
        wait_for(lambda: b.commands, timeout=20, what="the command at B")
        assert b.commands[0]["action"] == "ping"
        # The fleet identity reads reports but is no board: it cannot report for one.
        assert api.publish_raw("kedge/board-b/health", b"{}") == NOT_AUTHORIZED
        assert b.publish_raw("kedge/board-b/health", b"{}") in ACCEPTED
    finally:
        api.close()


def test_another_boards_client_id_cannot_take_its_session(
    broker: Mosquitto, pair: tuple[Board, Board], seen: Recorder
) -> None:
    """Connecting with B's client id used to push B off the broker each time."""
    a, b = pair
    assert a.auth is not None
    wait_for(lambda: b"online" in seen.on("kedge/board-b/status"), timeout=20, what="B online")
    wrong = Auth(a.auth.username, "not-the-password", a.auth.ca)
    for who in (a.auth, None, wrong):  # A's own valid identity; no identity; a guess
        for _ in range(3):
            assert connect(broker, who, "kedge-board-b") == "Not authorized"
    assert b.connected()
    assert seen.on("kedge/board-b/status") == [b"online"]  # no flapping: no will was sent


def test_a_renewed_identity_works_and_the_old_one_does_not(broker: Mosquitto) -> None:
    assert broker.identities is not None
    old = broker.identities.board("board-a")
    board = Board(broker.port, "board-a", auth=old)
    try:
        new = broker.identities.board("board-a")  # what enroll --renew makes
        wait_for(lambda: not board.connected(), timeout=20, what="the old session dropped")
        assert connect(broker, old, "kedge-board-a") == "Not authorized"
        assert connect(broker, new, "kedge-board-a") == "Success"
    finally:
        board.close()


def test_a_removed_board_is_dropped_and_cannot_come_back(broker: Mosquitto) -> None:
    assert broker.identities is not None
    auth = broker.identities.board("board-a")
    board = Board(broker.port, "board-a", auth=auth)
    try:
        broker.identities.remove("board-a")
        wait_for(lambda: not board.connected(), timeout=20, what="its session closed")
        assert connect(broker, auth, "kedge-board-a") == "Not authorized"
    finally:
        board.close()


# An MQTT 3.1.1 CONNECT, client id "plain", clean session, keepalive 10 s.
PLAIN_CONNECT = bytes([0x10, 17, 0, 4, *b"MQTT", 4, 2, 0, 10, 0, 5, *b"plain"])


def test_anonymous_and_plain_connections_are_refused(broker: Mosquitto) -> None:
    assert connect(broker, None, "kedge-anyone") == "Not authorized"
    # No plain MQTT on the TLS port (and no plain listener unless --loopback-port asks):
    # the broker answers a clear-text CONNECT without a CONNACK (0x20).
    with socket.create_connection(("127.0.0.1", broker.port), timeout=10) as s:
        s.sendall(PLAIN_CONNECT)
        try:
            answer = s.recv(16)
        except ConnectionResetError:
            answer = b""
    assert not answer.startswith(b"\x20")


def init(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "cloud-api.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\n')
    where = ["--conf-dir", str(tmp_path / "conf.d"), "--cert-dir", str(tmp_path / "certs"),
             "--dynsec-file", str(tmp_path / "dynsec.json"), "--owner", "root"]  # fmt: skip
    return subprocess.run([CLOUD_API, "broker", "init", "--config", str(config), *where, *args],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def test_broker_init_says_what_it_changed_and_changes_nothing_twice(tmp_path: Path) -> None:
    first = init(tmp_path, "--board-host", "192.0.2.10", "--port", "18883")
    assert first.returncode == 0, first.stderr
    wrote = [ln.split(":")[0] for ln in first.stdout.splitlines() if ln.startswith("wrote")]
    assert len(wrote) == 8
    assert (
        "mosquitto reads these at start: restart it (systemctl restart mosquitto)" in first.stdout
    )
    conf = (tmp_path / "conf.d" / "kedge.conf").read_text()
    assert "allow_anonymous false" in conf
    assert "listener 18883\n" in conf
    assert "127.0.0.1" not in conf  # a plain listener only when asked
    again = init(tmp_path, "--board-host", "192.0.2.10", "--port", "18883")
    assert again.returncode == 0, again.stderr
    assert not [ln for ln in again.stdout.splitlines() if ln.startswith("wrote")]
    assert again.stdout.splitlines()[-1] == "nothing changed: no restart needed"
    # A new name for the boards: only the certificate (and the record) are made again.
    renamed = init(tmp_path, "--board-host", "broker.example.org", "--board-host", "192.0.2.10",
                   "--port", "18883", "--loopback-port", "11883")  # fmt: skip
    changed = sorted(Path(ln.split(":")[0].split()[1]).name for ln in renamed.stdout.splitlines()
                     if ln.startswith("wrote"))  # fmt: skip
    assert changed == ["broker.json", "kedge.conf", "server.crt"]
    assert "listener 11883 127.0.0.1" in (tmp_path / "conf.d" / "kedge.conf").read_text()


def test_broker_init_refuses_bad_input_with_one_clear_line(tmp_path: Path) -> None:
    bad = init(tmp_path, "--board-host", "not a host")
    assert bad.returncode == 2
    assert "'not a host': expected a DNS name or an IP address" in bad.stderr
    port = init(tmp_path, "--board-host", "192.0.2.10", "--port", "70000")
    assert (port.returncode, port.stderr.strip()) == (
        2,
        "kedge-cloud-api: error: port 70000: expected 1-65535",
    )
    assert not (tmp_path / "state" / "broker").exists()  # nothing was written
    owner = init(tmp_path, "--board-host", "192.0.2.10", "--owner", "nobody-here")
    assert owner.returncode == 2
    assert "--owner nobody-here: no such user and group" in owner.stderr
    assert "Traceback" not in bad.stderr + port.stderr + owner.stderr

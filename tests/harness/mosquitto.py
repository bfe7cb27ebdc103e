"""A real mosquitto on a loopback port with its own config (anonymous, password, TLS, or
as `kedge-cloud-api broker init` sets it up: TLS and one identity per board), and a
subscriber that records what the broker delivers."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from cloud_api.broker import identities as ids
from cloud_api.broker.admin import BrokerAdmin
from cloud_api.broker.record import BrokerRecord
from cloud_api.broker.setup import BrokerSetup
from kedge.broker import BrokerSettings
from kedge.host import Host
from tests.harness import paho_client
from tests.harness.procs import free_port, spawn, stop, tail
from tests.harness.wait import wait_for


@dataclass(frozen=True)
class Auth:
    """Who a test client connects as (and the CA it pins, over TLS)."""

    username: str
    password: str
    ca: Path | None = None
    client_id: str | None = None


@dataclass
class Identities:
    """What `broker init` made for a test broker: its record and the API's passwords."""

    state_dir: Path
    record: BrokerRecord
    _observer: Auth | None = None
    _boards: dict[str, Auth] = field(default_factory=dict)

    def _secret(self, path: Path) -> str:
        return path.read_text().strip()

    @property
    def cloud(self) -> Auth:
        r = self.record
        return Auth(ids.CLOUD_USERNAME, self._secret(r.cloud_password_file), r.ca_file)

    def admin(self) -> BrokerAdmin:
        r = self.record
        where = BrokerSettings(host="127.0.0.1", port=r.port, tls=True, ca_file=r.ca_file)
        return BrokerAdmin(where, ids.ADMIN_USERNAME, self._secret(r.admin_password_file),
                           topic_prefix=r.topic_prefix, discovery_prefix="homeassistant")  # fmt: skip

    def board(self, node: str) -> Auth:
        """A board's identity as enrollment makes it (a new password each time)."""
        password = asyncio.run(self.admin().put_board(node))
        return Auth(
            ids.board_username(node), password, self.record.ca_file, ids.board_client_id(node)
        )

    def board_settings(self, node: str) -> dict[str, Any]:
        """`[mqtt]` keys for an agent on `node` holding its identity (made once per test
        broker; board() again rotates it)."""
        if node not in self._boards:
            self._boards[node] = self.board(node)
            password_file = self.state_dir.parent / f"{node}.mqtt-password"
            password_file.write_text(self._boards[node].password + "\n")
        return {"tls": True, "ca_file": str(self.record.ca_file), "username": ids.board_username(node),
                "password_file": str(self.state_dir.parent / f"{node}.mqtt-password")}  # fmt: skip

    def remove(self, node: str) -> None:
        asyncio.run(self.admin().remove_board(node))

    def observer(self) -> Auth:
        """A test's own all-seeing identity (what Home Assistant or an operator's
        mosquitto_sub would be given): reads and writes every topic, made once."""
        if self._observer is None:
            password = ids.new_password()
            acls = [{"acltype": t, "topic": "#", "allow": True}
                    for t in ("subscribePattern", "publishClientSend")]  # fmt: skip
            asyncio.run(self.admin().run([
                {"command": "createRole", "rolename": "test-observer", "acls": acls},
                {"command": "createClient", "username": "test-observer", "password": password,
                 "roles": [{"rolename": "test-observer"}]},
            ]))  # fmt: skip
            self._observer = Auth("test-observer", password, self.record.ca_file)
        return self._observer


@dataclass
class Mosquitto:
    workdir: Path
    port: int = field(default_factory=free_port)
    users: dict[str, str] = field(default_factory=dict)
    tls: tuple[Path, Path, Path] | None = None  # ca, cert, key
    also_on: tuple[str, ...] = ()  # more addresses to listen on (a veth's, for partitions)
    extra: tuple[str, ...] = ()  # more configuration lines (a shipped file's)
    # Set up by `broker init` with this cloud API state directory: TLS on `port`, the
    # dynamic security plugin, no anonymous access (board_host: the certificate's name).
    state_dir: Path | None = None
    board_host: str = "127.0.0.1"
    identities: Identities | None = None
    proc: subprocess.Popen[bytes] | None = None

    def _init(self) -> None:
        assert self.state_dir is not None
        setup = BrokerSetup(
            state_dir=self.state_dir, board_hosts=[self.board_host], port=self.port,
            conf_dir=self.workdir / "conf.d", cert_dir=self.workdir / "certs",
            dynsec_file=self.workdir / "dynamic-security.json", owner="root",
        )  # fmt: skip
        asyncio.run(setup.run(Host(Path("/"))))
        from cloud_api.broker import record

        found = record.load(self.state_dir)
        assert found is not None
        if self.identities is None:  # a restart keeps the identities (they live in its file)
            self.identities = Identities(self.state_dir, found)

    def config(self) -> str:
        if self.state_dir is not None:
            # `user root`: see below; the rest is exactly what broker init wrote.
            return "\n".join([
                "user root", f"persistence_location {self.workdir}/",
                f"log_dest file {self.workdir / 'mosquitto.log'}", "log_type error", "log_type warning",
                "log_type notice", f"include_dir {self.workdir / 'conf.d'}",
            ]) + "\n"  # fmt: skip
        # `user root`: started as root, mosquitto would switch to its own user and could no
        # longer read the test's password file, keys or log directory.
        lines = ["user root", f"listener {self.port} 127.0.0.1", "persistence false", "max_queued_messages 0",
                 f"log_dest file {self.workdir / 'mosquitto.log'}", "log_type error", "log_type warning"]  # fmt: skip
        lines[2:2] = [f"listener {self.port} {address}" for address in self.also_on]
        if self.extra:
            # the harness's own "persistence false" and queue limit give way to the file's
            lines = [
                ln for ln in lines if not ln.startswith(("persistence ", "max_queued_messages "))
            ]
            lines += [*self.extra, f"persistence_location {self.workdir}/"]
        if self.users:
            lines += [f"password_file {self.workdir / 'passwd'}", "allow_anonymous false"]
        else:
            lines.append("allow_anonymous true")
        if self.tls:
            ca, cert, key = self.tls
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"]
        return "\n".join(lines) + "\n"

    def start(self) -> Mosquitto:
        """Start it; on its first start, a port taken between free_port() and mosquitto's
        bind (another test's outgoing connection can take it) is given up for another."""
        first = self.identities is None and not (self.workdir / "mosquitto.conf").exists()
        for attempt in range(3):
            try:
                return self._start()
            except TimeoutError as exc:
                if not first or attempt == 2 or "Address already in use" not in str(exc):
                    raise
                self.port, self.identities = free_port(), None
        raise AssertionError("unreachable")

    def _start(self) -> Mosquitto:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.state_dir is not None:
            self._init()
        if self.users:
            passwd = self.workdir / "passwd"
            passwd.write_text("")
            for user, password in self.users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(passwd), user, password], check=True, timeout=30
                )
        (self.workdir / "mosquitto.conf").write_text(self.config())
        self.proc = spawn(
            ["mosquitto", "-c", str(self.workdir / "mosquitto.conf")], self.workdir / "stdout.log"
        )
        wait_for(self._listening, timeout=20, what=f"mosquitto on {self.port}")
        return self

    def _listening(self) -> bool:
        import socket

        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited: {tail(self.workdir / 'mosquitto.log')}")
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


class Recorder:
    """Subscribes to topics and keeps every message, in arrival order."""

    def __init__(
        self, broker: Mosquitto, *topics: str, session: str | None = None, **auth: Any
    ) -> None:
        """session: a client id whose session the broker keeps (5 min) while this recorder
        is away or the broker restarts, so what arrives meanwhile waits for the next
        Recorder with the same session — no race with a publisher that reconnects first."""
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=session or f"recorder-{free_port()}",
                                   protocol=paho.MQTTv5)  # fmt: skip
        if "username" in auth:
            self._client.username_pw_set(auth["username"], auth.get("password"))
        elif broker.identities is not None:
            seer = broker.identities.observer()
            self._client.username_pw_set(seer.username, seer.password)
        if broker.tls:
            self._client.tls_set(ca_certs=str(broker.tls[0]))
        elif broker.identities is not None:
            self._client.tls_set(ca_certs=str(broker.identities.record.ca_file))
        self._client.on_message = self._on_message
        self._subscribed = threading.Event()
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_connect = lambda c, *a: c.subscribe([(t, 1) for t in topics])
        kept = None
        if session:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            kept = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            kept.SessionExpiryInterval = 300
        self._client.connect(
            "127.0.0.1", broker.port, 30, clean_start=session is None, properties=kept
        )
        self._client.loop_start()
        if not self._subscribed.wait(20):
            raise TimeoutError("recorder did not subscribe")

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def json_on(self, topic: str) -> list[Any]:
        return [json.loads(p) for p in self.on(topic)]

    def close(self) -> None:
        paho_client.release(self._client)

    def publish(self, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

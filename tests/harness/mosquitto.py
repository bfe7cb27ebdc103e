"""A real mosquitto on a loopback port with its own config (anonymous, password, TLS),
and a subscriber that records what the broker delivers."""

from __future__ import annotations

import json
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from tests.harness.procs import free_port, spawn, stop, tail
from tests.harness.wait import wait_for


@dataclass
class Mosquitto:
    workdir: Path
    port: int = field(default_factory=free_port)
    users: dict[str, str] = field(default_factory=dict)
    tls: tuple[Path, Path, Path] | None = None  # ca, cert, key
    also_on: tuple[str, ...] = ()  # more addresses to listen on (a veth's, for partitions)
    extra: tuple[str, ...] = ()  # more configuration lines (a shipped file's)
    proc: subprocess.Popen[bytes] | None = None

    def config(self) -> str:
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
        self.workdir.mkdir(parents=True, exist_ok=True)
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

    def __init__(self, broker: Mosquitto, *topics: str, **auth: Any) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self._client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"recorder-{free_port()}")
        if "username" in auth:
            self._client.username_pw_set(auth["username"], auth.get("password"))
        if broker.tls:
            self._client.tls_set(ca_certs=str(broker.tls[0]))
        self._client.on_message = self._on_message
        self._subscribed = threading.Event()
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_connect = lambda c, *a: c.subscribe([(t, 1) for t in topics])
        self._client.connect("127.0.0.1", broker.port, 30)
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
        self._client.loop_stop()
        self._client.disconnect()

    def publish(self, topic: str, payload: str | bytes, *, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)

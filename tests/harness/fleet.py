"""Boards for the fleet view without running an agent: reports built from the agent's own
models (kedge.wire), published through a real broker as a board publishes them."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from kedge import command_auth
from kedge.wire import (
    AVAILABLE,
    NOT_AVAILABLE,
    CheckReport,
    CheckResult,
    ChecksSummary,
    CommandResult,
    DockerState,
    EdgecoreState,
    HealthReport,
    Payload,
    RemoteCommand,
    Status,
    Topics,
    Usage,
)
from tests.harness import paho_client
from tests.harness.mosquitto import Auth
from tests.harness.sealing import TEST_COMMAND_KEY
from tests.harness.wait import wait_for


def health(node: str, *, cpu: float = 5.0, temp: float | None = 45.0, seq: int = 1,
           at: datetime | None = None, failing: tuple[str, ...] = ()) -> HealthReport:  # fmt: skip
    at = at or datetime.now(UTC)
    usage = Usage(total_mb=3906, free_mb=2870, percent=26.5)
    return HealthReport(
        node=node, seq=seq, timestamp=at, agent_version="0.1.0", uptime_s=100.0,
        agent_uptime_s=50.0, cpu_percent=cpu, load=(0.1, 0.1, 0.1), memory=usage,
        swap=Usage(total_mb=0, free_mb=0, percent=0.0),
        disks={"/": Usage(total_mb=29124, free_mb=17350, percent=40.4)}, temperature_c=temp,
        temperatures_c={"soc-thermal": temp} if temp is not None else {},
        network={"bytes_sent": 1, "bytes_recv": 1}, docker=DockerState(up=True, version="20.10.24"),
        edgecore=EdgecoreState(active=True, state="active"), join_phase="joined",
        checks=ChecksSummary(ok=not failing, failing=list(failing), at=at), clock_offset_s=0.01,
        spool_depth=0, spool_dropped=0,
    )  # fmt: skip


def checks(node: str, *, failing: tuple[str, ...] = (), at: datetime | None = None) -> CheckReport:
    ids = ("conflicts", "clock", "docker", "cgroup-driver", "images", "cloudcore")
    results = [
        CheckResult(id=i, title=i, status=Status.FAIL if i in failing else Status.PASS,
                    summary=f"{i} is {'wrong' if i in failing else 'fine'}",
                    remedy=f"fix {i}" if i in failing else "")
        for i in ids
    ]  # fmt: skip
    return CheckReport(node=node, kubeedge_version="v1.13.0", started_at=at or datetime.now(UTC),
                       duration_ms=12, ok=not failing, checks=results)  # fmt: skip


class Board:
    """One simulated board's MQTT client: the agent's topics, QoS 1, its will."""

    def __init__(self, port: int, node: str, prefix: str = "kedge", *, auth: Auth | None = None,
                 client_id: str | None = None) -> None:  # fmt: skip
        self.node, self.topics, self.auth = node, Topics(prefix, node), auth
        self.commands: list[dict[str, Any]] = []  # those sealed for this board, as a board checks
        self.forged: list[str] = []  # why the others would be refused
        self.refused: list[str] = []  # CONNACK reasons other than success
        self.acks: dict[int, int] = {}  # mid -> PUBACK reason code (0x87: not authorized)
        self._connected = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5,
                                  client_id=client_id or f"kedge-{node}")  # fmt: skip
        if auth is not None:
            self.client.username_pw_set(auth.username, auth.password)
            if auth.ca is not None:
                self.client.tls_set(ca_certs=str(auth.ca))
        self.client.will_set(self.topics.status, NOT_AVAILABLE, qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda c, u, mid, rc, p: self.acks.__setitem__(mid, rc.value)
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()
        wait_for(
            lambda: self._connected.is_set() or self.refused, timeout=20, what=f"{node} connected"
        )
        if self.refused:
            self.close()
            raise ConnectionRefusedError(f"{node}: the broker refused: {self.refused[0]}")
        self.client.subscribe(self.topics.cmd, qos=1)
        self.publish_raw(self.topics.status, AVAILABLE.encode(), retain=True)

    def _on_connect(
        self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any = None
    ) -> None:
        if rc.is_failure:
            self.refused.append(str(rc))
        else:
            self._connected.set()

    def connected(self) -> bool:
        return self.client.is_connected()

    def _message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        import json

        body = json.loads(message.payload)
        reason = command_auth.refusal(
            RemoteCommand.model_validate(body), self.node, TEST_COMMAND_KEY
        )
        if reason is None:
            self.commands.append(body)
        else:
            self.forged.append(reason)

    def publish_raw(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        """Publish at QoS 1; the PUBACK's reason code (0 accepted, 0x87 not authorized).
        mosquitto 2.0 also drops a client that published where it may not: paho connects
        again by itself, and the next publish waits for that."""
        wait_for(self.client.is_connected, timeout=20, what=f"{self.node} connected again")
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        info.wait_for_publish(timeout=10)
        assert info.is_published(), f"not acknowledged by the broker: {topic}"
        wait_for(lambda: info.mid in self.acks, timeout=10, what=f"the PUBACK for {topic}")
        return self.acks[info.mid]

    def send(self, leaf: str, model: Payload) -> None:
        self.publish_raw(f"{self.topics.base}/{leaf}", model.to_json().encode())

    def answer(self, command: dict[str, Any], status: str = "done", **result: Any) -> None:
        self.send("cmd/result", CommandResult(id=command["id"], action=command["action"], status=status,
                                              result=result, finished_at=datetime.now(UTC)))  # fmt: skip

    def vanish(self) -> None:
        """Drop off the network without a goodbye: the broker publishes the will."""
        self.client.socket().close()  # type: ignore[union-attr]
        paho_client.release(self.client, goodbye=False)

    def close(self) -> None:
        paho_client.release(self.client)

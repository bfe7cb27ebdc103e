"""kedge-agent run against a real mosquitto: online/offline, health, discovery, spool,
commands, systemd notifications."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kedge.wire import CheckReport, HealthReport
from tests.conftest import ready_settings
from tests.harness.agentd import AGENT, Agentd
from tests.harness.board import Board
from tests.harness.dockerd import Dockerd
from tests.harness.mosquitto import Mosquitto, Recorder
from tests.harness.sealing import sealed
from tests.harness.sntp import SntpServer
from tests.harness.wait import wait_for
from tests.kubeedge_sim.cloudcore import CloudcoreSim

pytestmark = pytest.mark.docker
INTERVAL = 0.3


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    """Set up as `kedge-cloud-api broker init` does: TLS, the board's own identity."""
    b = Mosquitto(tmp_path / "mosquitto", state_dir=tmp_path / "cloud-state").start()
    yield b
    b.stop()


@pytest.fixture
def recorder(broker: Mosquitto) -> Iterator[Recorder]:
    r = Recorder(broker, "kedge/#", "homeassistant/#")
    yield r
    r.close()


def daemon_settings(board: Board, docker: Dockerd, ntp: SntpServer, cc: CloudcoreSim, broker: Mosquitto,
                    **extra: Any) -> dict[str, Any]:  # fmt: skip
    node = extra.get("node_name", "board-1")
    own = broker.identities.board_settings(node) if broker.identities else {}
    mqtt = {"host": "127.0.0.1", "port": broker.port, **own, **extra.pop("mqtt", {})}
    return ready_settings(
        docker, ntp, cc, report_interval=INTERVAL, check_interval=3600, mqtt=mqtt, **extra
    )


@pytest.fixture
def configured(
    board: Board,
    dockerd_systemd: Dockerd,
    ntp: SntpServer,
    cloudcore: CloudcoreSim,
    broker: Mosquitto,
) -> Board:
    board.install_join_tools()
    board.configure(daemon_settings(board, dockerd_systemd, ntp, cloudcore, broker))
    return board


def healths(rec: Recorder) -> list[HealthReport]:
    # Strict: the board's own output never carries a key its schema does not name.
    return [
        HealthReport.model_validate_json(p, extra="forbid") for p in rec.on("kedge/board-1/health")
    ]


REQUIRED_DISCOVERY = {"name", "state_topic", "unique_id", "availability_topic", "device"}


def test_online_health_checks_and_discovery(
    configured: Board, recorder: Recorder, start_daemon: Callable[..., Agentd]
) -> None:
    configured.write("/sys/class/thermal/thermal_zone0/type", "soc-thermal\n")
    configured.write("/sys/class/thermal/thermal_zone0/temp", "47200\n")
    configured.write("/sys/class/thermal/thermal_zone1/type", "gpu-thermal\n")
    configured.write("/sys/class/thermal/thermal_zone1/temp", "45000\n")
    start_daemon()
    wait_for(lambda: b"online" in recorder.on("kedge/board-1/status"), timeout=30, what="online")
    wait_for(lambda: len(healths(recorder)) >= 2, timeout=30, what="two health reports")
    wait_for(lambda: recorder.on("kedge/board-1/checks"), timeout=60, what="checks report")
    report = healths(recorder)[-1]
    assert report.node == "board-1"
    assert report.docker.up is True
    assert report.docker.version
    assert report.docker.version.startswith("20.10")
    assert 0 <= report.cpu_percent <= 100
    assert "/" in report.disks
    assert report.temperatures_c == {"soc-thermal": 47.2, "gpu-thermal": 45.0}
    assert report.temperature_c == 47.2
    assert report.join_phase is None
    checks = CheckReport.model_validate_json(
        recorder.on("kedge/board-1/checks")[-1], extra="forbid"
    )
    assert checks.ok is True
    configs = [
        (t, json.loads(p)) for t, p, _ in recorder.messages if t.startswith("homeassistant/")
    ]
    assert len(configs) == 14
    for topic, cfg in configs:
        assert topic.endswith("/config")
        assert topic.split("/")[1] in ("sensor", "binary_sensor")
        assert set(cfg) >= REQUIRED_DISCOVERY, (topic, cfg)
        assert cfg["availability_topic"] == "kedge/board-1/status"
        assert cfg["device"]["identifiers"] == ["kedge_board-1"]
    expire = {c["unique_id"]: c.get("expire_after") for _, c in configs}
    assert expire["kedge_board-1_cpu"] == 1  # 3 x 0.3 s, rounded, at least 1
    assert all(not h.replayed for h in healths(recorder))


def test_discovery_is_resent_when_home_assistant_comes_online(
    configured: Board, recorder: Recorder, start_daemon: Callable[..., Agentd]
) -> None:
    start_daemon()
    wait_for(lambda: len([t for t, _, _ in recorder.messages if t.startswith("homeassistant/sensor")]) >= 6,
             timeout=30, what="discovery")  # fmt: skip
    before = len([t for t, _, _ in recorder.messages if t.endswith("/config")])
    recorder.publish("homeassistant/status", "online")
    wait_for(lambda: len([t for t, _, _ in recorder.messages if t.endswith("/config")]) >= 2 * before,
             timeout=30, what="discovery again")  # fmt: skip


def test_kill_9_leaves_the_will(
    configured: Board, recorder: Recorder, start_daemon: Callable[..., Agentd]
) -> None:
    d = start_daemon()
    wait_for(lambda: b"online" in recorder.on("kedge/board-1/status"), timeout=30, what="online")
    d.proc.kill()
    d.proc.wait(10)
    wait_for(
        lambda: recorder.on("kedge/board-1/status")[-1] == b"offline", timeout=30, what="the will"
    )


def test_sigterm_says_offline_itself_and_exits(
    configured: Board, recorder: Recorder, start_daemon: Callable[..., Agentd]
) -> None:
    d = start_daemon()
    wait_for(lambda: b"online" in recorder.on("kedge/board-1/status"), timeout=30, what="online")
    assert d.stop() == 0
    assert recorder.on("kedge/board-1/status")[-1] == b"offline"
    assert d.status()["connected"] is False


def test_outage_loses_no_report(
    configured: Board, broker: Mosquitto, start_daemon: Callable[..., Agentd]
) -> None:
    # A kept session: the reports the daemon replays may reach the restarted broker before
    # the second recorder does, and then wait for it there.
    rec = Recorder(broker, "kedge/board-1/health", session="outage-watch")
    d = start_daemon()
    wait_for(lambda: len(rec.on("kedge/board-1/health")) >= 2, timeout=30, what="reports")
    rec.close()
    broker.stop()
    wait_for(
        lambda: d.status().get("spool_depth", 0) >= 5,
        timeout=30,
        what="reports spooled during the outage",
    )
    broker.start()
    rec = Recorder(broker, "kedge/board-1/health", session="outage-watch")
    try:
        wait_for(lambda: d.status().get("connected") and d.status().get("spool_depth", 99) <= 1, timeout=60,
                 what="the spool to drain")  # fmt: skip
        wait_for(
            lambda: any(not h.replayed for h in healths(rec)),
            timeout=30,
            what="a live report after replay",
        )
        got = healths(rec)
    finally:
        rec.close()
    seqs = [h.seq for h in got]
    assert seqs == sorted(seqs), "in order"
    assert len(seqs) == len(set(seqs)), "exactly once"
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "none missing"
    assert sum(h.replayed for h in got) >= 5
    assert got[-1].spool_dropped == 0


def test_spool_bound_drops_the_oldest_and_counts(
    board: Board,
    dockerd_systemd: Dockerd,
    ntp: SntpServer,
    cloudcore: CloudcoreSim,
    broker: Mosquitto,
    start_daemon: Callable[..., Agentd],
) -> None:
    board.configure(
        daemon_settings(
            board, dockerd_systemd, ntp, cloudcore, broker, mqtt={"spool_max_messages": 3}
        )
    )
    d = start_daemon()
    wait_for(lambda: d.status().get("connected"), timeout=30, what="connected")
    broker.stop()
    wait_for(lambda: d.status().get("spool_dropped", 0) >= 4, timeout=30, what="drops")
    assert d.status()["spool_depth"] <= 3
    broker.start()
    rec = Recorder(broker, "kedge/board-1/health")
    try:
        wait_for(lambda: any(h.spool_dropped >= 4 and not h.replayed for h in healths(rec)), timeout=60,
                 what="a live report counting the drops")  # fmt: skip
    finally:
        rec.close()


def command(cid: str, action: str, *, expires_in: float = 60, **args: Any) -> str:
    now = datetime.now(UTC)
    return sealed({"id": cid, "action": action, "issued_at": now.isoformat(),
                   "expires_at": (now + timedelta(seconds=expires_in)).isoformat(), "args": args})  # fmt: skip


def test_commands_are_answered_and_bad_ones_rejected(
    configured: Board, recorder: Recorder, start_daemon: Callable[..., Agentd]
) -> None:
    start_daemon()
    wait_for(lambda: b"online" in recorder.on("kedge/board-1/status"), timeout=30, what="online")
    sent = {
        "ping-1": command("ping-1", "ping"),
        "bad-json": "{not json",
        "bad-types": json.dumps(
            {"id": "bad-types", "action": "ping", "issued_at": "yesterday", "expires_at": 5}
        ),
        "expired": command("expired", "ping", expires_in=-10),
        "unknown": command("unknown", "reboot"),
        "not-allowed": command("not-allowed", "reset"),
        "ping-1-again": command("ping-1", "ping"),
        "check-1": command("check-1", "check", only=["node-name"]),
    }
    for payload in sent.values():
        recorder.publish("kedge/board-1/cmd", payload)
    wait_for(
        lambda: len(recorder.on("kedge/board-1/cmd/result")) >= len(sent),
        timeout=60,
        what="all results",
    )
    results = recorder.json_on("kedge/board-1/cmd/result")
    by_reason = {(r["id"], r["status"]): r["reason"] for r in results}
    assert by_reason[("ping-1", "done")] == ""
    assert by_reason[(None, "rejected")] == "malformed command: not JSON"
    assert by_reason[("bad-types", "rejected")].startswith("malformed command: issued_at:")
    assert by_reason[("expired", "rejected")].startswith("expired at ")
    assert (
        by_reason[("unknown", "rejected")]
        == "unknown action 'reboot' (known: ping, check, fix, join, reset, upgrade)"
    )
    assert by_reason[("not-allowed", "rejected")].startswith(
        "reset is not allowed remotely on this board"
    )
    assert by_reason[("ping-1", "rejected")] == "duplicate id: this command was already received"
    check = next(r for r in results if r["id"] == "check-1")
    assert check["status"] == "done"
    assert check["result"]["checks"] == {"node-name": "pass"}
    count = len(healths(recorder))
    wait_for(
        lambda: len(healths(recorder)) > count + 1, timeout=30, what="the daemon still reporting"
    )


def test_password_auth(
    board: Board,
    dockerd_systemd: Dockerd,
    ntp: SntpServer,
    cloudcore: CloudcoreSim,
    tmp_path: Path,
    start_daemon: Callable[..., Agentd],
) -> None:
    # A broker of the user's own with a shared password file (no broker init), on purpose.
    broker = Mosquitto(tmp_path / "auth", users={"board-1": "s3cret", "watcher": "w"}).start()
    try:
        (tmp_path / "mqtt.pass").write_text("s3cret\n")
        mqtt = {"username": "board-1", "password_file": str(tmp_path / "mqtt.pass")}
        board.configure(daemon_settings(board, dockerd_systemd, ntp, cloudcore, broker, mqtt=mqtt))
        rec = Recorder(broker, "kedge/#", username="watcher", password="w")
        try:
            d = start_daemon()
            wait_for(lambda: rec.on("kedge/board-1/health"), timeout=30, what="health with auth")
        finally:
            rec.close()
        assert "s3cret" not in d.log.read_text()
    finally:
        broker.stop()


def test_tls_with_a_private_ca(
    board: Board,
    dockerd_systemd: Dockerd,
    ntp: SntpServer,
    cloudcore: CloudcoreSim,
    tmp_path: Path,
    start_daemon: Callable[..., Agentd],
) -> None:
    from tests.kubeedge_sim.pki import CloudcorePKI

    pki = CloudcorePKI.create(["127.0.0.1"])
    ca = tmp_path / "ca.pem"
    ca.write_text(__import__("ssl").DER_cert_to_PEM_cert(pki.ca_der))
    pki.write_server_pem(str(tmp_path / "server.pem"), str(tmp_path / "server.key"))
    # TLS with a CA of the user's own (no broker init): the board's ca_file setting.
    broker = Mosquitto(
        tmp_path / "tls", tls=(ca, tmp_path / "server.pem", tmp_path / "server.key")
    ).start()
    try:
        board.configure(daemon_settings(board, dockerd_systemd, ntp, cloudcore, broker,
                                        mqtt={"tls": True, "ca_file": str(ca)}))  # fmt: skip
        rec = Recorder(broker, "kedge/#")
        try:
            start_daemon()
            wait_for(lambda: rec.on("kedge/board-1/health"), timeout=30, what="health over TLS")
        finally:
            rec.close()
    finally:
        broker.stop()


def test_readiness_status_and_watchdog_on_notify_socket(
    configured: Board, start_daemon: Callable[..., Agentd], tmp_path: Path
) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(1)
    got: list[str] = []

    def receive() -> bool:
        with contextlib.suppress(TimeoutError):
            got.extend(sock.recv(4096).decode().splitlines())
        connected = any(line.startswith("STATUS=connected to 127.0.0.1:") for line in got)
        return "READY=1" in got and got.count("WATCHDOG=1") >= 2 and connected

    try:
        d = start_daemon({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
        wait_for(receive, timeout=30, what="READY and watchdog pings")
        assert any(line.startswith("STATUS=connected to 127.0.0.1:") for line in got)
        d.stop()
        wait_for(lambda: receive() and "STOPPING=1" in got, timeout=30, what="STOPPING")
    finally:
        sock.close()


def test_status_command_reads_the_daemons_view(
    configured: Board, recorder: Recorder, start_daemon: Callable[..., Agentd]
) -> None:
    start_daemon()
    wait_for(lambda: len(healths(recorder)) >= 2, timeout=30, what="reports")
    argv = [
        AGENT,
        "status",
        "--json",
        "--root",
        str(configured.root),
        "--config",
        str(configured.config_path),
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0
    assert doc["daemon_running"] is True
    assert doc["daemon"]["connected"] is True
    assert doc["daemon"]["spool_depth"] <= 1
    assert doc["daemon"]["checks"]["ok"] is True


def test_mqtt_3_1_1_fallback(
    board: Board,
    dockerd_systemd: Dockerd,
    ntp: SntpServer,
    cloudcore: CloudcoreSim,
    broker: Mosquitto,
    recorder: Recorder,
    start_daemon: Callable[..., Agentd],
) -> None:
    board.configure(
        daemon_settings(board, dockerd_systemd, ntp, cloudcore, broker, mqtt={"protocol": "3.1.1"})
    )
    d = start_daemon()
    wait_for(lambda: healths(recorder), timeout=30, what="health over MQTT 3.1.1")
    d.proc.kill()
    wait_for(
        lambda: recorder.on("kedge/board-1/status")[-1] == b"offline", timeout=30, what="the will"
    )


def test_sighup_reloads_settings_and_moves_to_the_new_broker(
    board: Board,
    dockerd_systemd: Dockerd,
    ntp: SntpServer,
    cloudcore: CloudcoreSim,
    broker: Mosquitto,
    tmp_path: Path,
    start_daemon: Callable[..., Agentd],
) -> None:
    board.configure(daemon_settings(board, dockerd_systemd, ntp, cloudcore, broker))
    d = start_daemon()
    wait_for(lambda: d.status().get("connected"), timeout=30, what="connected")
    other = Mosquitto(tmp_path / "other").start()  # anonymous on purpose: any broker will do
    try:
        rec = Recorder(other, "kedge/#")
        try:
            board.configure(daemon_settings(board, dockerd_systemd, ntp, cloudcore, other))
            d.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: healths(rec), timeout=30, what="reports on the new broker")
        finally:
            rec.close()
        assert d.status()["broker"] == f"127.0.0.1:{other.port}"
        assert d.proc.poll() is None
    finally:
        other.stop()


def test_bad_config_stops_the_daemon_with_exit_2(
    board: Board, start_daemon: Callable[..., Agentd]
) -> None:
    board.configure({"mqtt": {"port": 1883}})  # no host
    d = start_daemon()
    assert d.proc.wait(60) == 2
    assert "mqtt.host is not set" in d.log.read_text()


def test_sighup_applies_allow_remote(
    board: Board,
    dockerd_systemd: Dockerd,
    ntp: SntpServer,
    cloudcore: CloudcoreSim,
    broker: Mosquitto,
    recorder: Recorder,
    start_daemon: Callable[..., Agentd],
) -> None:
    board.configure(daemon_settings(board, dockerd_systemd, ntp, cloudcore, broker))
    d = start_daemon()
    wait_for(lambda: b"online" in recorder.on("kedge/board-1/status"), timeout=30, what="online")
    recorder.publish("kedge/board-1/cmd", command("reset-1", "reset"))
    wait_for(lambda: recorder.on("kedge/board-1/cmd/result"), timeout=30, what="first result")
    assert recorder.json_on("kedge/board-1/cmd/result")[0]["status"] == "rejected"
    board.configure(
        daemon_settings(board, dockerd_systemd, ntp, cloudcore, broker, allow_remote=["reset"])
    )
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "daemon.reloaded" in d.log.read_text(), timeout=30, what="the reload")
    recorder.publish("kedge/board-1/cmd", command("reset-2", "reset"))
    wait_for(
        lambda: len(recorder.on("kedge/board-1/cmd/result")) >= 2, timeout=60, what="second result"
    )
    second = recorder.json_on("kedge/board-1/cmd/result")[1]
    assert (second["id"], second["status"]) == ("reset-2", "done")
    assert second["reason"] == "removed 0 items"


def test_a_rotated_broker_password_is_picked_up_without_a_restart(
    configured: Board, broker: Mosquitto, recorder: Recorder, start_daemon: Callable[..., Agentd]
) -> None:
    """What `enroll --renew` does to a running daemon: a new password on disk, the old one
    ended at the broker (which drops the connection). Refused, the daemon reads its
    settings again and is back with the new one, by itself."""
    assert broker.identities is not None
    d = start_daemon()
    wait_for(lambda: healths(recorder), timeout=30, what="a first report")
    password_file = Path(broker.identities.board_settings("board-1")["password_file"])
    fresh = broker.identities.board("board-1")  # the broker drops the daemon's connection now
    password_file.write_text(fresh.password + "\n")
    before = len(recorder.on("kedge/board-1/status"))
    wait_for(lambda: recorder.on("kedge/board-1/status")[before:].count(b"online") >= 1,
             timeout=90, what="online again with the new password")  # fmt: skip
    seen = len(healths(recorder))
    wait_for(lambda: len(healths(recorder)) > seen, timeout=30, what="reports flowing again")
    assert d.proc.poll() is None
    assert "Traceback" not in d.log.read_text()

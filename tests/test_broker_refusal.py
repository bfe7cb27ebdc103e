"""A broker that refuses the board is told apart from one that cannot be reached: the
reason reaches `kedge-agent status`, and the daemon retries slowly until the settings
change (a SIGHUP with the right password connects at once)."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import AgentRunner
from tests.harness.agentd import Agentd
from tests.harness.board import Board
from tests.harness.mosquitto import Mosquitto, Recorder
from tests.harness.wait import wait_for


@pytest.fixture
def locked_broker(tmp_path: Path) -> Iterator[Mosquitto]:
    # A password file of the user's own (no broker init): refusal is what is tested.
    broker = Mosquitto(tmp_path / "mosquitto", users={"board-1": "right"}).start()
    yield broker
    broker.stop()


def test_a_wrong_password_reaches_status_and_a_reload_mends_it(
    board: Board, locked_broker: Mosquitto, start_daemon: Callable[..., Agentd],
    agent: AgentRunner, tmp_path: Path,
) -> None:  # fmt: skip
    password = board.write("/etc/kedge/mqtt.password", "wrong\n", 0o600)
    board.configure({"node_name": "board-1", "ntp_servers": [], "report_interval": 0.5,
                     "docker_host": f"unix://{tmp_path / 'no-docker.sock'}",
                     "mqtt": {"host": "127.0.0.1", "port": locked_broker.port, "username": "board-1",
                              "password_file": str(password)}})  # fmt: skip
    d = start_daemon()
    wait_for(lambda: d.status().get("refused"), timeout=30, what="the refusal in daemon.json")
    assert d.status()["refused"] == "not authorised"  # what mosquitto answers a wrong password
    shown = agent(board, "status")
    assert "broker refused: not authorised" in shown.out
    log = d.log.read_text()
    assert "mqtt.refused" in log
    assert "mqtt.unreachable" not in log

    watch = Recorder(locked_broker, "kedge/board-1/status", username="board-1", password="right")
    try:
        password.write_text("right\n")
        d.proc.send_signal(signal.SIGHUP)
        # The slow retry is not waited out: new settings reconnect at once.
        wait_for(lambda: b"online" in watch.on("kedge/board-1/status"), timeout=20,
                 what="online after the reload")  # fmt: skip
        wait_for(lambda: d.status().get("connected") is True, timeout=20, what="connected")
        assert d.status()["refused"] is None
    finally:
        watch.close()

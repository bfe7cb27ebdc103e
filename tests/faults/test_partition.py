"""A network partition between board and broker: the board's daemon runs in its own
network namespace joined to the broker's side by a veth pair, and the link is cut
(`ip link set down` inside the board's namespace) for many report intervals, then
restored. The broker publishes the board's will (offline), the daemon keeps its
reports, and after the link returns it is online again and every report arrives, in
order, once."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.agentd import AGENT
from tests.harness.board import Board
from tests.harness.dockerd import Dockerd
from tests.harness.master import LAN_IP, lan
from tests.harness.mosquitto import Mosquitto, Recorder
from tests.harness.netns import Netns, netns
from tests.harness.sntp import SntpServer
from tests.harness.wait import wait_for
from tests.kubeedge_sim.cloudcore import CloudcoreSim
from tests.test_daemon import daemon_settings, healths

pytestmark = [pytest.mark.faults, pytest.mark.netns, pytest.mark.docker]


@pytest.fixture
def board_ns() -> Iterator[tuple[Netns, str]]:
    """The board's own network: MASTER_IP behind a veth whose other end is LAN_IP."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    with netns() as ns, lan(ns) as link:
        yield ns, link


@pytest.fixture
def lan_broker(tmp_path: Path, board_ns: tuple[Netns, str]) -> Iterator[Mosquitto]:
    # broker init's TLS listener takes every address; its certificate names LAN_IP
    b = Mosquitto(
        tmp_path / "mosquitto", state_dir=tmp_path / "cloud-state", board_host=LAN_IP
    ).start()
    yield b
    b.stop()


def test_a_cut_link_loses_nothing_and_the_will_tells(
    board: Board, dockerd_systemd: Dockerd, ntp: SntpServer, cloudcore: CloudcoreSim,
    lan_broker: Mosquitto, board_ns: tuple[Netns, str],
) -> None:  # fmt: skip
    ns, link = board_ns
    board.configure(daemon_settings(board, dockerd_systemd, ntp, cloudcore, lan_broker,
                                    mqtt={"host": LAN_IP, "keepalive_s": 5}))  # fmt: skip
    status = Recorder(lan_broker, "kedge/board-1/status")
    health = Recorder(lan_broker, "kedge/board-1/health")
    log = board.root.parent / "agentd.log"
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            ns.argv(AGENT, "run", "--root", str(board.root), "--config", str(board.config_path)),
            stdout=fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(lambda: len(healths(health)) >= 3, timeout=30, what="reports over the link")
        ns.run("ip", "link", "set", link, "down").check_returncode()
        wait_for(lambda: status.on("kedge/board-1/status")[-1:] == [b"offline"], timeout=30,
                 what="the broker to publish the board's will")  # fmt: skip
        cut_at = len(healths(health))
        state = board.path("/var/lib/kedge-agent/daemon.json")
        wait_for(lambda: _depth(state) >= 20, timeout=60,
                 what="reports queued while the link is down")  # fmt: skip
        ns.run("ip", "link", "set", link, "up").check_returncode()
        wait_for(lambda: status.on("kedge/board-1/status")[-1:] == [b"online"], timeout=90,
                 what="online again")  # fmt: skip
        wait_for(lambda: any(not h.replayed for h in healths(health)[cut_at:]) and _depth(state) <= 1,
                 timeout=60, what="the queue to drain and live reports")  # fmt: skip
        got = healths(health)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        status.close()
        health.close()
    seqs = [h.seq for h in got]
    assert len(seqs) == len(set(seqs)), "exactly once"
    assert seqs == list(range(seqs[0], seqs[-1] + 1)), "in order, none missing"
    assert len(got) - cut_at >= 20, "what was queued during the cut arrived"
    assert any(h.replayed for h in got[cut_at:])
    assert got[-1].spool_dropped == 0


def _depth(state: Path) -> int:
    import json

    try:
        return int(json.loads(state.read_text())["spool_depth"])
    except (OSError, ValueError, KeyError):
        return 0

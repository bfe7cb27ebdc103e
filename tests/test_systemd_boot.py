"""The packaged units under a real systemd: a Debian 12 system booted with
`systemd-nspawn --boot`, both packages installed from the signed repository with apt,
then: the agent starts on a fresh board, reports, tells systemd READY/STATUS, executes
a remote reset (removing) and a remote fix (writing under /etc) from inside its sandbox,
is restarted by the watchdog when it hangs and stops cleanly; the cloud API likewise. Nothing is logged at level error.

Marked packaging (it builds the packages and a bookworm root; skip locally with
-m "not packaging"); CI runs it as root.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import need
from tests.harness.http import call_json
from tests.harness.mosquitto import Mosquitto, Recorder
from tests.harness.nspawn import Container, booted
from tests.harness.procs import free_port
from tests.harness.rootfs import bookworm_chroot
from tests.harness.sealing import TEST_COMMAND_KEY, sealed
from tests.harness.sntp import SntpServer
from tests.harness.wait import wait_for
from tests.test_packaging import publish

pytestmark = [pytest.mark.packaging, pytest.mark.faults]
NODE = "board-ns"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    # Anonymous on purpose: what is tested is the units under systemd; identities are
    # tested with the same daemon in tests/test_daemon.py and tests/cloud/test_identities.py.
    b = Mosquitto(tmp_path_factory.mktemp("mosquitto")).start()
    yield b
    b.stop()


@pytest.fixture(scope="module")
def ntp() -> Iterator[SntpServer]:
    # Five minutes ahead of the board: the clock check fails and a fix has work to do.
    with SntpServer(offset_s=300.0) as server:
        yield server


@pytest.fixture(scope="module")
def system(
    debs: dict[str, Path], broker: Mosquitto, ntp: SntpServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Container, int]]:  # fmt: skip
    need("systemd-nspawn", "nsenter", "chroot", "tar")
    if os.geteuid() != 0:
        pytest.skip("booting a container needs root")
    tmp = tmp_path_factory.mktemp("boot")
    root = bookworm_chroot(tmp / "root")
    pool = tmp / "pool"
    pool.mkdir()
    for name in ("kedge-agent_amd64", "kedge-cloud-api_amd64"):
        shutil.copy(debs[name], pool)
    publish(root, pool, tmp)
    (root / "etc/hostname").write_text(f"{NODE}\n")
    api_port = free_port()
    # What an operator puts in the environment files before or after installing.
    (root / "etc/default").mkdir(parents=True, exist_ok=True)
    (root / "etc/default/kedge-agent").write_text(
        f"KEDGE_AGENT_MQTT__HOST=127.0.0.1\nKEDGE_AGENT_MQTT__PORT={broker.port}\n"
        f"KEDGE_AGENT_NODE_NAME={NODE}\nKEDGE_AGENT_REPORT_INTERVAL=1\n"
        f"KEDGE_AGENT_COMMAND_KEY={TEST_COMMAND_KEY}\n"
        'KEDGE_AGENT_ALLOW_REMOTE=\'["reset", "fix"]\'\n'
        f"KEDGE_AGENT_NTP_SERVERS='[\"{ntp.address}\"]'\n"
    )
    # The board's clock tool: it records that it was asked to step the clock, in /etc,
    # which the daemon's own sandbox (ProtectSystem=strict) cannot write.
    (root / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    chronyc = root / "usr/local/bin/chronyc"
    chronyc.write_text('#!/bin/sh\necho "$@" > /etc/kedge-test-clock-stepped\n')
    chronyc.chmod(0o755)
    (root / "etc/default/kedge-cloud-api").write_text(f"KEDGE_CLOUD_LISTEN=127.0.0.1:{api_port}\n")
    with booted(root, tmp / "console.log") as box:
        install = box.run("apt-get", "install", "-y", "kedge-agent", "kedge-cloud-api", timeout=600)
        assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
        yield box, api_port


def command(cid: str, action: str, **args: object) -> str:
    now = datetime.now(UTC)
    return sealed({"id": cid, "action": action, "issued_at": now.isoformat(),
                   "expires_at": (now + timedelta(minutes=5)).isoformat(), "args": args}, node=NODE)  # fmt: skip


def test_apt_install_gives_a_running_reporting_agent(
    system: tuple[Container, int], broker: Mosquitto
) -> None:
    box, _ = system
    recorder = Recorder(broker, f"kedge/{NODE}/#")
    try:
        wait_for(
            lambda: box.show("kedge-agent", "ActiveState") == "active", timeout=60, what="active"
        )
        wait_for(
            lambda: box.show("kedge-agent", "StatusText").startswith("connected to 127.0.0.1:"),
            timeout=60,
            what="READY and STATUS from the sandboxed daemon",
        )
        wait_for(lambda: len(recorder.on(f"kedge/{NODE}/health")) >= 3, timeout=60, what="reports")
        assert recorder.on(f"kedge/{NODE}/status")[-1] == b"online"
    finally:
        recorder.close()
    assert '"level": "error"' not in box.journal("kedge-agent")


def test_a_remote_reset_changes_the_board_from_inside_the_sandbox(
    system: tuple[Container, int], broker: Mosquitto
) -> None:
    """/etc/kubeedge did not exist when the service started, and ProtectSystem=strict
    makes /etc read-only for it: the reset runs as a transient unit instead."""
    box, _ = system
    wait_for(lambda: box.show("kedge-agent", "StatusText").startswith("connected"), timeout=60,
             what="connected")  # fmt: skip
    box.run("mkdir", "-p", "/etc/kubeedge/ca", "/var/lib/kubeedge", check=True)
    box.run("touch", "/etc/kubeedge/ca/rootCA.crt", "/var/lib/kubeedge/edgecore.db", check=True)
    recorder = Recorder(broker, f"kedge/{NODE}/cmd/result")
    try:
        recorder.publish(f"kedge/{NODE}/cmd", command("reset-1", "reset"))
        wait_for(
            lambda: recorder.on(f"kedge/{NODE}/cmd/result"), timeout=120, what="the reset's result"
        )
        result = recorder.json_on(f"kedge/{NODE}/cmd/result")[0]
    finally:
        recorder.close()
    assert result["status"] == "done", result["reason"]
    assert box.run("test", "-e", "/etc/kubeedge").returncode == 1
    assert box.run("test", "-e", "/var/lib/kubeedge").returncode == 1
    assert box.show("kedge-agent", "NRestarts") == "0"
    assert "kedge-agent-reset-reset-1" in box.run("journalctl", "--no-pager", "-o", "cat").stdout


def test_a_remote_fix_writes_outside_the_sandbox(
    system: tuple[Container, int], broker: Mosquitto
) -> None:
    """A fix writes where the daemon's sandbox cannot (here: chronyc, writing /etc):
    it runs as a transient unit too, and its report comes back as the result."""
    box, _ = system
    wait_for(lambda: box.show("kedge-agent", "StatusText").startswith("connected"), timeout=60,
             what="connected")  # fmt: skip
    recorder = Recorder(broker, f"kedge/{NODE}/cmd/result")
    try:
        recorder.publish(f"kedge/{NODE}/cmd", command("fix-1", "fix", only=["clock"]))
        wait_for(
            lambda: recorder.on(f"kedge/{NODE}/cmd/result"), timeout=120, what="the fix's result"
        )
        result = recorder.json_on(f"kedge/{NODE}/cmd/result")[0]
    finally:
        recorder.close()
    stepped = box.run("cat", "/etc/kedge-test-clock-stepped")
    assert stepped.returncode == 0, result
    assert stepped.stdout.strip() == "makestep"
    # The recording chronyc does not really step the clock: the fix says so.
    assert result["status"] == "failed", result
    assert "still failing: clock" in result["reason"]
    assert "kedge-agent-fix-fix-1" in box.run("journalctl", "--no-pager", "-o", "cat").stdout


def test_the_watchdog_restarts_a_hung_daemon_and_stop_is_clean(
    system: tuple[Container, int], broker: Mosquitto
) -> None:
    box, _ = system
    dropin = box.root / "etc/systemd/system/kedge-agent.service.d"
    dropin.mkdir(parents=True, exist_ok=True)
    (dropin / "watchdog.conf").write_text("[Service]\nWatchdogSec=3\nTimeoutAbortSec=2\n")
    box.run("systemctl", "daemon-reload", check=True)
    box.run("systemctl", "restart", "kedge-agent", check=True)
    wait_for(lambda: box.show("kedge-agent", "StatusText").startswith("connected"), timeout=60,
             what="connected")  # fmt: skip
    restarts = int(box.show("kedge-agent", "NRestarts"))
    pid = box.show("kedge-agent", "MainPID")
    box.run("kill", "-STOP", pid, check=True)  # hung: no more watchdog pings
    wait_for(lambda: int(box.show("kedge-agent", "NRestarts")) > restarts, timeout=60,
             what="the watchdog's restart")  # fmt: skip
    wait_for(lambda: box.show("kedge-agent", "StatusText").startswith("connected"), timeout=60,
             what="connected again")  # fmt: skip
    assert box.show("kedge-agent", "MainPID") != pid
    recorder = Recorder(broker, f"kedge/{NODE}/status")
    try:
        box.run("systemctl", "stop", "kedge-agent", check=True)
        assert (box.show("kedge-agent", "ActiveState"), box.show("kedge-agent", "Result")) == (
            "inactive",
            "success",
        )
        wait_for(lambda: recorder.on(f"kedge/{NODE}/status")[-1:] == [b"offline"], timeout=30,
                 what="offline on stop")  # fmt: skip
    finally:
        recorder.close()
        (dropin / "watchdog.conf").unlink()
        box.run("systemctl", "daemon-reload")


def test_the_cloud_api_service_starts_answers_and_stops_cleanly(
    system: tuple[Container, int],
) -> None:
    box, port = system
    wait_for(
        lambda: box.show("kedge-cloud-api", "ActiveState") == "active", timeout=60, what="active"
    )
    wait_for(lambda: box.show("kedge-cloud-api", "StatusText").startswith("serving on"), timeout=60,
             what="READY")  # fmt: skip
    status, _, body = call_json("GET", f"http://127.0.0.1:{port}/healthz", timeout=10)
    assert (status, body["status"]) == (200, "ok")
    assert box.run("test", "-s", "/var/lib/kedge-cloud-api/admin.token").returncode == 0
    box.run("systemctl", "stop", "kedge-cloud-api", check=True)
    assert box.show("kedge-cloud-api", "Result") == "success"
    assert '"level": "error"' not in box.journal("kedge-cloud-api")

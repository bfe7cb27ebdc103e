"""clock: SNTP offsets, the cloud API's Date, and cloudcore's certificate vs the board."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import formatdate

import pytest

from kedge.wire import CheckResult
from tests.conftest import AgentRunner, check_one
from tests.harness.board import Board
from tests.harness.sntp import SntpServer
from tests.kubeedge_sim.cloudcore import CloudcoreSim
from tests.kubeedge_sim.pki import CloudcorePKI


def clock(agent: AgentRunner, board: Board) -> CheckResult:
    return check_one(agent, board, "clock")


@pytest.mark.parametrize(
    ("offset", "status", "summary"),
    [
        (0.0, "pass", "clock is in step with NTP"),
        (3.0, "pass", "clock is 3.0 s behind NTP"),
        (25.0, "warn", "clock is 25.0 s behind NTP"),
        (-25.0, "warn", "clock is 25.0 s ahead of NTP"),
        (90.0, "fail", "clock is 90.0 s behind NTP"),
        (-3600.0, "fail", "clock is 3600.0 s ahead of NTP"),
    ],
)
def test_offset_against_ntp(
    board: Board, agent: AgentRunner, offset: float, status: str, summary: str
) -> None:
    with SntpServer(offset_s=offset) as ntp:
        board.configure({"ntp_servers": [ntp.address]})
        result = clock(agent, board)
    assert result.status == status
    assert result.summary.startswith(f"{summary} {ntp.address}")
    assert result.details["offset_s"] == pytest.approx(offset, abs=0.05)
    if status != "pass":
        assert "chronyc makestep" in result.remedy


def test_thresholds_are_settings(board: Board, agent: AgentRunner) -> None:
    with SntpServer(offset_s=3.0) as ntp:
        board.configure({"ntp_servers": [ntp.address], "clock_warn_s": 1, "clock_fail_s": 2})
        result = clock(agent, board)
    assert result.status == "fail"
    assert "(limit 2 s)" in result.summary


def test_silent_ntp_server_is_a_warning(board: Board, agent: AgentRunner) -> None:
    with SntpServer(answer=False) as ntp:
        board.configure({"ntp_servers": [ntp.address]})
        result = clock(agent, board)
    assert result.status == "warn"
    assert result.summary == f"no time source answered (NTP: {ntp.address})"
    assert result.details["ntp_errors"] == [f"ntp 127.0.0.1:{ntp.port}: timed out after 2 s"]


def test_unsynchronised_server_reply_is_rejected(board: Board, agent: AgentRunner) -> None:
    with SntpServer(stratum=0) as kiss_of_death, SntpServer(offset_s=0.0) as good:
        board.configure({"ntp_servers": [kiss_of_death.address, good.address]})
        result = clock(agent, board)
    assert result.status == "pass"
    assert result.details["ntp_errors"] == [
        f"ntp 127.0.0.1:{kiss_of_death.port}: not a usable server reply (mode 4, stratum 0)"
    ]


def test_board_clock_before_cloudcores_certificate_is_the_x509_failure(
    board: Board, agent: AgentRunner
) -> None:
    # cloudcore made its certificates two days "after" the board's clock.
    pki = CloudcorePKI.create(["127.0.0.1"], not_before=datetime.now(UTC) + timedelta(days=2))
    with SntpServer() as ntp, CloudcoreSim(pki) as cc:
        board.configure(
            {
                "ntp_servers": [ntp.address],
                "cloudcore": cc.cloudcore,
                "cloudcore_cert_port": cc.cert_port,
            }
        )
        run = agent(board, "check", "--json", "--only", "clock,cloudcore")
    result = run.result("clock")
    assert result.status == "fail"
    assert "is before cloudcore's certificate" in result.summary
    assert '"x509: certificate has expired or is not yet valid"' in result.summary
    # The cloudcore check sees the same thing from the TLS side.
    assert run.result("cloudcore").status == "fail"
    assert "certificate is not yet valid" in run.result("cloudcore").summary


class _SkewedDate(http.server.BaseHTTPRequestHandler):
    skew = 0.0

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def date_time_string(self, timestamp: float | None = None) -> str:
        return formatdate(time.time() + self.skew, usegmt=True)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def skewed_http(skew: float) -> Iterator[str]:
    handler = type("Handler", (_SkewedDate,), {"skew": skew})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_cloud_api_time_is_compared_too(board: Board, agent: AgentRunner) -> None:
    with SntpServer() as ntp, skewed_http(300.0) as url:
        board.configure({"ntp_servers": [ntp.address], "cloud_api_url": url})
        result = clock(agent, board)
    assert result.status == "fail"
    assert result.summary.endswith("s behind cloud API (limit 60 s)")
    assert result.details["cloud_api_offset_s"] == pytest.approx(300, abs=1.5)


def test_a_board_seconds_behind_a_freshly_installed_cloudcore_is_caught(
    board: Board, agent: AgentRunner
) -> None:
    """cloudcore's certificates are valid from the second it made them (certutil.go@v1.13.0,
    `NotBefore: time.Now().UTC()`): a board a few seconds behind fails, whatever NTP says."""
    pki = CloudcorePKI.create(["127.0.0.1"], not_before=datetime.now(UTC) + timedelta(seconds=20))
    with SntpServer() as ntp, CloudcoreSim(pki) as cc:
        board.configure({"ntp_servers": [ntp.address], "cloudcore": cc.cloudcore,
                         "cloudcore_cert_port": cc.cert_port})  # fmt: skip
        result = agent(board, "check", "--json", "--only", "clock").result("clock")
    assert result.status == "fail"
    assert "is before cloudcore's certificate" in result.summary

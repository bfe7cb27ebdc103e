"""daemon.json is written when what it says changes, not when only its clocks move:
at steady state the board's flash sees it twice an hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.daemon.status_file import StatusFile
from kedge.wire import ChecksSummary, DaemonStatus

T0 = datetime(2026, 11, 29, 4, 0, tzinfo=UTC)


def status(*, at: datetime = T0, ok: bool = True, report: datetime = T0) -> DaemonStatus:
    return DaemonStatus(pid=1, node="b", broker="h:1883", connected=True, last_report=report,
                        checks=ChecksSummary(ok=ok, failing=[] if ok else ["clock"], at=at))  # fmt: skip


def test_only_news_is_written(tmp_path: Path) -> None:
    f = StatusFile(tmp_path / "daemon.json", refresh_s=3600)
    assert f.write(status()) is True
    later = T0 + timedelta(minutes=15)
    assert f.write(status(report=later)) is False  # a new report: not news
    assert f.write(status(at=later, report=later)) is False  # a new preflight, same verdict
    assert f.write(status(at=later, ok=False)) is True  # the verdict changed
    assert DaemonStatus.model_validate_json((tmp_path / "daemon.json").read_text()).checks == (
        ChecksSummary(ok=False, failing=["clock"], at=later)
    )
    assert f.write(status(at=later, ok=False), force=True) is True  # at shutdown


def test_a_stale_file_is_refreshed(tmp_path: Path) -> None:
    f = StatusFile(tmp_path / "daemon.json", refresh_s=0.0)
    assert f.write(status()) is True
    assert f.write(status(report=T0 + timedelta(seconds=10))) is True

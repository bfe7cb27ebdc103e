"""`kedge-agent check` as a user meets it: listing, selection, output, exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import datetime

import pytest

from agent.checks import ORDER
from agent.render import render_report, use_colour
from kedge.wire import CheckReport
from tests.conftest import AgentRunner, statuses
from tests.harness.board import Board


def test_list_names_every_check_and_dependency(agent: AgentRunner) -> None:
    run = agent(None, "check", "--list")
    assert run.rc == 0
    listed = [line.split()[0] for line in run.out.splitlines()[: len(ORDER)]]
    assert listed == list(ORDER)
    assert "cgroup-driver needs docker" in run.out
    assert "images needs docker" in run.out


@pytest.mark.parametrize("flag", ["--only", "--skip", "--ignore"])
def test_unknown_check_id_is_a_usage_error(agent: AgentRunner, flag: str) -> None:
    run = agent(None, "check", flag, "docker,dokcer")
    assert run.rc == 2
    assert run.err.startswith(
        f"kedge-agent: error: {flag}: unknown check id 'dokcer' (known: arch, keadm"
    )


def test_bad_root_is_a_usage_error(agent: AgentRunner, board: Board) -> None:
    run = agent(
        None, "check", "--root", str(board.root / "nope"), "--config", str(board.config_path)
    )
    assert run.rc == 2
    assert run.err == f"kedge-agent: error: --root {board.root / 'nope'}: not a directory\n"


def test_unknown_flag_exits_2_with_usage(agent: AgentRunner) -> None:
    with pytest.raises(SystemExit) as exc:
        agent(None, "check", "--frobnicate")
    assert exc.value.code == 2


def test_json_document_has_the_versioned_schema(board: Board, agent: AgentRunner) -> None:
    run = agent(board, "check", "--json", "--only", "node-name,arch")
    doc = json.loads(run.out)
    assert set(doc) == {
        "schema",
        "node",
        "kubeedge_version",
        "started_at",
        "duration_ms",
        "ok",
        "checks",
    }
    assert doc["schema"] == 1
    assert doc["node"] == "board-1"
    datetime.fromisoformat(doc["started_at"])  # RFC 3339
    assert isinstance(doc["duration_ms"], int)
    assert [c["id"] for c in doc["checks"]] == ["arch", "node-name"]
    for c in doc["checks"]:
        assert set(c) == {"id", "title", "status", "summary", "remedy", "details", "duration_ms"}
    assert doc["ok"] is True
    assert run.rc == 0


def test_exit_1_when_a_check_fails_and_remedy_is_shown(board: Board, agent: AgentRunner) -> None:
    board.write("/etc/hostname", "Bad_Name\n")
    run = agent(board, "check", "--only", "node-name")
    assert run.rc == 1
    lines = run.out.splitlines()
    assert lines[2].startswith(
        "✗ fail   node-name  'Bad_Name' (from the hostname) is not a valid node name"
    )
    assert lines[3].strip().startswith('Set node_name = "bad-name"')
    assert lines[-1].startswith("1 fail in ")
    assert lines[-1].endswith("not ready to join.")


def test_ignore_turns_the_failure_into_a_warning_and_exit_0(
    board: Board, agent: AgentRunner
) -> None:
    board.write("/etc/hostname", "Bad_Name\n")
    run = agent(board, "check", "--json", "--only", "node-name", "--ignore", "node-name")
    assert statuses(run) == {"node-name": "warn"}
    assert run.rc == 0
    assert run.report().ok


def test_warnings_as_errors(board: Board, agent: AgentRunner) -> None:
    board.mkdir("/var/lib/edged/pods")  # a stale directory: a warning
    assert agent(board, "check", "--only", "leftovers").rc == 0
    run = agent(board, "check", "--only", "leftovers", "--warnings-as-errors")
    assert run.rc == 1
    assert "! warn   leftovers  /var/lib/edged is not empty" in run.out
    assert run.out.rstrip().endswith("1 warn in " + run.out.rstrip().split(" in ")[-1])


def test_skip_leaves_checks_out(board: Board, agent: AgentRunner) -> None:
    run = agent(board, "check", "--json", "--skip", ",".join(c for c in ORDER if c != "arch"))
    assert list(statuses(run)) == ["arch"]


def test_colour_only_on_a_tty_and_never_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert use_colour(Tty()) is True
    assert use_colour(io.StringIO()) is False
    monkeypatch.setenv("NO_COLOR", "")
    assert use_colour(Tty()) is False


def test_colour_codes_wrap_the_status(board: Board, agent: AgentRunner) -> None:
    report = CheckReport.model_validate_json(agent(board, "check", "--json", "--only", "arch").out)
    assert "\033[32m✓ pass \033[0m" in render_report(report, colour=True)
    assert "\033[" not in render_report(report, colour=False)


def test_version_and_help_run_as_real_programs() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "agent", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert version.stdout.startswith("kedge-agent 0.")
    helptext = subprocess.run(
        [sys.executable, "-m", "agent", "check", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for flag in (
        "--json",
        "--only",
        "--skip",
        "--ignore",
        "--warnings-as-errors",
        "--root",
        "--config",
        "--list",
    ):
        assert flag in helptext.stdout
    assert "exit status: 0 nothing failed" in helptext.stdout


def test_logs_are_json_lines_on_stderr_when_not_a_tty(board: Board) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "check", "--only", "node-name", "-vv",
         "--root", str(board.root), "--config", str(board.config_path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0
    events = [json.loads(line) for line in proc.stderr.splitlines()]
    done = [e for e in events if e["event"] == "check.done"]
    assert done == [
        {"check": "node-name", "status": "pass", "ms": done[0]["ms"], "event": "check.done",
         "level": "debug", "timestamp": done[0]["timestamp"]}
    ]  # fmt: skip
    assert proc.stdout.startswith("kedge-agent check: node board-1")

"""kedge-agent run as a child process of a test, on a fixture board."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.board import Board

AGENT = str(Path(sys.executable).with_name("kedge-agent"))


class Agentd:
    def __init__(self, board: Board, env: dict[str, str] | None = None) -> None:
        self.board = board
        self.log = board.root.parent / "agentd.log"
        argv = [AGENT, "run", "--root", str(board.root), "--config", str(board.config_path)]
        full_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KEDGE_AGENT_", "NOTIFY_", "WATCHDOG_"))
        }
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                argv, stdout=fh, stderr=subprocess.STDOUT, env={**full_env, **(env or {})}
            )

    def status(self) -> dict[str, Any]:
        path = self.board.path("/var/lib/kedge-agent/daemon.json")
        return json.loads(path.read_text()) if path.exists() else {}

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture
def start_daemon(board: Board) -> Iterator[Callable[..., Agentd]]:
    started: list[Agentd] = []

    def start(env: dict[str, str] | None = None) -> Agentd:
        d = Agentd(board, env)
        started.append(d)
        return d

    yield start
    for d in started:
        d.stop()

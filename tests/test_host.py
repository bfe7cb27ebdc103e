"""The host seam: paths below the root, commands without a shell, deadlines that kill."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil
import pytest

from kedge.errors import CommandError
from kedge.host import Host
from tests.harness.board import Board
from tests.harness.wait import wait_for


def marker_processes(marker: str) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if marker in " ".join(p.info["cmdline"] or []):
            found.append(p)
    return found


def test_files_are_read_below_the_root(board: Board) -> None:
    host = Host(board.root)
    assert host.read_text("/etc/hostname") == "board-1\n"
    assert host.read_text("/etc/missing") is None
    assert host.path("/etc/kubeedge") == board.root / "etc/kubeedge"
    assert host.entries("/etc/systemd") == ["system"]
    assert host.entries("/nope") == []


def test_commands_resolve_on_the_search_path_below_the_root(board: Board) -> None:
    host = Host(board.root, search_path=["/usr/local/bin", "/usr/bin"])
    assert host.which("keadm") == "/usr/local/bin/keadm"
    assert host.which("systemctl") is None
    with pytest.raises(ValueError, match="not a command name"):
        host.which("../../bin/sh")


async def test_run_captures_output_and_exit_code(board: Board) -> None:
    result = await Host(board.root).run(["keadm", "version"], timeout=30)
    assert result.ok
    assert 'GitVersion:"v1.13.0"' in result.stdout


async def test_missing_command_is_a_command_error(board: Board) -> None:
    with pytest.raises(CommandError, match=r"^nonexistent: command not found on "):
        await Host(board.root).run(["nonexistent"], timeout=5)


async def test_deadline_kills_the_whole_process_group(board: Board, tmp_path: Path) -> None:
    marker = f"kedge-marker-{tmp_path.name}"
    # A background child and a foreground one, both carrying the marker in their argv.
    board.write(
        "/usr/local/bin/slow",
        f"#!/bin/sh\nsh -c 'while :; do sleep 1; done' {marker} &\n"
        f"exec sh -c 'while :; do sleep 1; done' {marker}\n",
        0o755,
    )
    with pytest.raises(CommandError, match=r"^slow: no answer within 0.3 s$"):
        await Host(board.root).run(["slow"], timeout=0.3)
    assert marker_processes(marker) == []


async def test_cancellation_reaps_the_child(board: Board, tmp_path: Path) -> None:
    marker = f"kedge-cancel-{tmp_path.name}"
    board.write(
        "/usr/local/bin/slow",
        f"#!/bin/sh\nexec sh -c 'while :; do sleep 1; done' {marker}\n",
        0o755,
    )
    task = asyncio.create_task(Host(board.root).run(["slow"], timeout=60))
    await asyncio.to_thread(wait_for, lambda: marker_processes(marker), timeout=10, what="child")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert marker_processes(marker) == []

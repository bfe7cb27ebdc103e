"""Mutating remote commands outside the daemon's sandbox.

The daemon's unit is locked down (ProtectSystem=strict, a short list of writable
paths), yet a remote `fix`, `join` or `reset` must create and delete /etc/kubeedge,
/var/lib/kubeedge, edgecore's unit, docker's daemon.json and more — directories that do
not exist when the service starts on a fresh board, and that a sandbox cannot bind in
advance. So under systemd the daemon asks systemd to run the same CLI command
(`kedge-agent join --yes --json`) as a transient unit, with root's ordinary view of the
system, waits for it, and reads its JSON report. The action shows in the journal as its
own unit (`kedge-agent-join-<id>`). Without systemd (a shell, the tests) it runs in the
daemon's process as before.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kedge.errors import CommandError
from kedge.host import Host

_UNIT_SAFE = re.compile(r"[^A-Za-z0-9_.-]")
POLL_S = 0.5


def available(host: Host) -> bool:
    """Under systemd (INVOCATION_ID is set for every unit's processes) on a live board."""
    return (
        bool(os.environ.get("INVOCATION_ID"))
        and host.is_live
        and host.which("systemd-run") is not None
    )


def agent_executable() -> str:
    return shutil.which("kedge-agent") or str(Path(sys.argv[0]).resolve())


async def run_action(
    host: Host,
    action: str,
    args: Sequence[str],
    *,
    command_id: str,
    report_dir: Path,
    timeout: float,
    emit: Callable[[str], None],
) -> dict[str, Any]:
    """`kedge-agent <action> --yes --json ARGS` as a transient unit; its JSON report.

    Started without --wait or --pipe: those need a D-Bus daemon, which a minimal board
    may lack, while starting a unit and asking for its state work over systemd's own
    socket. The report comes back through a file in the state directory."""
    unit = f"kedge-agent-{action}-{_UNIT_SAFE.sub('_', command_id)[:40]}"
    report_file = report_dir / f"{unit}.json"
    argv = ["systemd-run", f"--unit={unit}", f"--description=kedge-agent {action} (remote command)",
            "--collect", "--quiet", "--property=KillMode=mixed",
            # The service's own environment (KEDGE_AGENT_*), never on a command line.
            "--property=EnvironmentFile=-/etc/default/kedge-agent",
            f"--property=RuntimeMaxSec={int(timeout)}",
            f"--property=StandardOutput=truncate:{report_file}",
            "--property=StandardError=journal", "--property=UMask=0077",
            "--", agent_executable(), action, "--yes", "--json", *args]  # fmt: skip
    emit(f"running {action} as the transient unit {unit}")
    started = await host.run(argv, timeout=30)
    if not started.ok:
        raise CommandError(f"systemd-run could not start {unit}: {started.stderr.strip()[-300:]}")
    try:
        await _wait_until_done(host, unit, timeout + 30)
        try:
            text = report_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            text = ""
    finally:
        report_file.unlink(missing_ok=True)
    try:
        report = json.loads(text)
    except ValueError:
        raise CommandError(
            f"{unit} printed no report: see journalctl -u {unit} (or the daemon's journal)"
        ) from None
    if not isinstance(report, dict):
        raise CommandError(f"{unit} printed no report")
    return report


async def _wait_until_done(host: Host, unit: str, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if await host.unit_state(unit, timeout=15) not in (
            "active",
            "activating",
            "deactivating",
            "reloading",
        ):
            return
        if loop.time() >= deadline:
            await host.run(["systemctl", "stop", unit], timeout=60)
            raise CommandError(f"{unit} did not finish within {timeout:g} s; stopped it")
        await asyncio.sleep(POLL_S)

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

import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agent.errors import CommandError
from agent.host import Host

_UNIT_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


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
    timeout: float,
    emit: Callable[[str], None],
) -> dict[str, Any]:
    """`kedge-agent <action> --yes --json ARGS` as a transient unit; its JSON report."""
    unit = f"kedge-agent-{action}-{_UNIT_SAFE.sub('_', command_id)[:40]}"
    argv = ["systemd-run", f"--unit={unit}", f"--description=kedge-agent {action} (remote command)",
            "--wait", "--collect", "--pipe", "--quiet", "--property=KillMode=mixed",
            # The service's own environment (KEDGE_AGENT_*), never on a command line.
            "--property=EnvironmentFile=-/etc/default/kedge-agent",
            f"--property=RuntimeMaxSec={int(timeout)}",
            "--", agent_executable(), action, "--yes", "--json", *args]  # fmt: skip
    emit(f"running {action} as the transient unit {unit}")
    result = await host.run(argv, timeout=timeout + 30)
    for line in result.stderr.splitlines()[-20:]:
        emit(line)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        tail = " / ".join(result.stderr.strip().splitlines()[-3:]) or "no output"
        raise CommandError(f"{unit} ended with exit code {result.returncode}: {tail}") from None
    if not isinstance(report, dict):
        raise CommandError(f"{unit} printed no report")
    return report

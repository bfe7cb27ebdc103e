"""cgroup-driver: make docker use the configured cgroup driver via daemon.json."""

from __future__ import annotations

import asyncio
import json
import shutil
import stat
from typing import Any

from agent.checks.docker import DAEMON_JSON, daemon_json_driver
from agent.fixes.base import CannotFix, FixContext, fixes
from kedge.errors import DockerError
from kedge.private_files import write_private
from kedge.wire import CheckResult

DOCKER_UNIT = "docker.service"
BACKUP_SUFFIX = ".kedge-backup"


def merged(data: dict[str, Any], driver: str) -> dict[str, Any]:
    """daemon.json with exactly one native.cgroupdriver exec-opt; every other key kept."""
    opts = [
        o for o in data.get("exec-opts") or []
        if not (isinstance(o, str) and o.replace(" ", "").startswith("native.cgroupdriver="))
    ]  # fmt: skip
    return {**data, "exec-opts": [*opts, f"native.cgroupdriver={driver}"]}


async def wait_for_docker(fx: FixContext, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            await fx.docker.ping()
        except DockerError as exc:
            if loop.time() > deadline:
                raise CannotFix(f"docker did not answer within {timeout:g} s after the restart: {exc}",
                                "journalctl -u docker -e shows why it did not start") from exc  # fmt: skip
        else:
            return
        await asyncio.sleep(0.25)


@fixes("cgroup-driver")
async def fix_cgroup_driver(fx: FixContext, result: CheckResult) -> None:
    found = fx.facts.cgroup
    if found is not None and found.memory_cgroup is False:
        raise CannotFix(
            "the memory cgroup needs a kernel command-line change and a reboot", result.remedy
        )
    target = fx.settings.cgroup_driver
    if target == "auto" or (found is not None and found.docker_driver == target):
        return
    path = fx.host.path(DAEMON_JSON)
    text = fx.host.read_text(DAEMON_JSON)
    try:
        data = json.loads(text) if text and text.strip() else {}
    except json.JSONDecodeError as exc:
        raise CannotFix(
            f"{DAEMON_JSON} is not valid JSON (line {exc.lineno} column {exc.colno}); it is never overwritten",
            "Fix the JSON by hand, then run kedge-agent fix again.",
        ) from exc
    if not isinstance(data, dict):
        raise CannotFix(
            f"{DAEMON_JSON} is not a JSON object; it is never overwritten", "Fix it by hand."
        )
    new = merged(data, target)
    if new == data and daemon_json_driver(data) == target:
        fx.change("run", f"systemctl restart {DOCKER_UNIT}", "daemon.json already asks for it")
    else:
        fx.change(
            "write", DAEMON_JSON, f'"exec-opts": ["native.cgroupdriver={target}"] (other keys kept)'
        )
        fx.change(
            "run", f"systemctl restart {DOCKER_UNIT}", f"docker then uses the {target} driver"
        )
    if fx.dry_run:
        return
    if path.exists():
        mode = stat.S_IMODE(path.stat().st_mode)
        shutil.copy2(path, path.with_name(path.name + BACKUP_SUFFIX))
    else:
        mode = 0o644
        path.parent.mkdir(parents=True, exist_ok=True)
    # Whole or not at all: docker must never start on half a daemon.json.
    write_private(path, json.dumps(new, indent=2) + "\n", mode=mode)
    await fx.restart(DOCKER_UNIT, "journalctl -u docker -e")
    await wait_for_docker(fx)
    info = await fx.docker.info()
    if info.get("CgroupDriver") != target:
        raise CannotFix(f"docker restarted but still uses {info.get('CgroupDriver')}",
                        f"Check {DAEMON_JSON} and any dockerd flags in docker.service (--exec-opt).")  # fmt: skip

"""A stand-in for systemctl on a fixture board (no systemd as PID 1 here).

Units live in var/lib/kedge-sim/systemd.json below the board root:
  {"environment": {...}, "units": {"kubelet.service": {"active": "active", "enabled": true},
   "docker.service": {"exec": [...], "pidfile": "..."}, "edgecore.service": {"pid": 123}}}
A unit without "exec" runs its unit file's ExecStart (below the root). Started processes
are real; their output goes to the simulated journal. Answers and exit codes follow
systemctl(1): is-active prints one state per unit and exits 0 only when all are active.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from tests.kubeedge_sim import sim

UNIT_DIRS = ("etc/systemd/system", "lib/systemd/system", "usr/lib/systemd/system")


def _unit(name: str) -> str:
    return name if "." in name else f"{name}.service"


def unit_file(root: Path, unit: str) -> Path | None:
    for d in UNIT_DIRS:
        if (root / d / unit).is_file():
            return root / d / unit
    return None


def unit_text(root: Path, unit: str) -> str:
    """The unit file and its drop-ins (`<unit>.d/*.conf`, in name order), as systemd
    reads them: later assignments win."""
    path = unit_file(root, unit)
    parts = [path.read_text()] if path else []
    for d in UNIT_DIRS:
        dropins = root / d / f"{unit}.d"
        if dropins.is_dir():
            parts += [p.read_text() for p in sorted(dropins.glob("*.conf"))]
    return "\n".join(parts)


def unit_environment(text: str) -> dict[str, str]:
    """Environment= lines (systemd.exec(5)): space-separated, optionally quoted assignments."""
    env: dict[str, str] = {}
    for line in re.findall(r"^Environment=(.*)$", text, re.M):
        env.update(a.partition("=")[::2] for a in shlex.split(line) if "=" in a)
    return env


# What a service gets from the manager when nothing sets more (systemd.exec(5),
# "Environment variables in spawned processes"): not the environment of whoever ran
# `systemctl start`.
MANAGER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _state(root: Path) -> dict[str, Any]:
    data = sim.load(root, "systemd")
    data.setdefault("units", {})
    data.setdefault("environment", {})
    return data


def _supervised(unit: dict[str, Any]) -> dict[str, Any]:
    path = unit.get("supervisor")
    try:
        return dict(json.loads(Path(path).read_text())) if path else {}
    except (OSError, ValueError):
        return {}


def active_state(unit: dict[str, Any]) -> str:
    if "pid" in unit:
        if not sim.alive(unit["pid"]):
            return "failed"
        # Restart=always: the supervisor knows whether the service runs or waits to restart.
        return str(_supervised(unit).get("state", "active")) if unit.get("supervisor") else "active"
    return str(unit.get("active", "inactive"))


def restarts(unit: dict[str, Any]) -> int:
    return int(_supervised(unit).get("restarts", unit.get("restarts", 0)))


def start(root: Path, name: str, data: dict[str, Any]) -> int:
    unit = data["units"].setdefault(name, {})
    if "pid" in unit and sim.alive(unit["pid"]):
        return 0
    argv = unit.get("exec")
    # A unit given as "exec" is a test's own daemon (dockerd), run with the test's
    # environment; one from a unit file gets what systemd would give it.
    env = {**os.environ, **data["environment"]}
    if argv is None:
        if unit_file(root, name) is None:
            sys.stderr.write(f"Failed to start {name}: Unit {name} not found.\n")
            return 5
        text = unit_text(root, name)
        env = {"PATH": MANAGER_PATH, **data["environment"], **unit_environment(text)}
        found = re.search(r"^ExecStart=(\S+)(.*)$", text, re.M)
        if not found:
            sys.stderr.write(f"Failed to start {name}: Unit {name} has no ExecStart.\n")
            return 1
        argv = [str(root / found[1].lstrip("/")), *found[2].split()]
        if re.search(r"^Restart=always$", text, re.M):
            delay = re.search(r"^RestartSec=(\d+(?:\.\d+)?)$", text, re.M)
            supervisor = root / sim.SIM_DIR / "units" / f"{name}.json"
            supervisor.parent.mkdir(parents=True, exist_ok=True)
            supervisor.unlink(missing_ok=True)
            unit["supervisor"] = str(supervisor)
            argv = [sys.executable, str(Path(__file__).with_name("supervise.py")), str(supervisor),
                    delay[1] if delay else "0.1", *argv]  # fmt: skip
    with sim.journal(root, name).open("ab") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    unit["pid"] = proc.pid
    unit.pop("active", None)
    return 0


def stop(root: Path, name: str, data: dict[str, Any]) -> int:
    unit = data["units"].get(name, {})
    pid = unit.pop("pid", None)
    if pid and sim.alive(pid):
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).send_signal(signal.SIGTERM)
        # Not psutil's wait(): a unit started by someone else may be a zombie we cannot reap.
        deadline = time.monotonic() + 20
        while sim.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if sim.alive(pid):
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).kill()
    pidfile = unit.get("pidfile")
    if pidfile:
        deadline = time.monotonic() + 20
        while Path(pidfile).exists() and time.monotonic() < deadline:
            time.sleep(0.05)  # dockerd removes its pidfile last
    if name in data["units"]:
        data["units"][name]["active"] = "inactive"
    return 0


def enable(root: Path, name: str, data: dict[str, Any], on: bool) -> int:
    path = unit_file(root, name)
    link = root / "etc/systemd/system/multi-user.target.wants" / name
    if on:
        if path is None:
            sys.stderr.write(f"Failed to enable unit: Unit file {name} does not exist.\n")
            return 1
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.is_symlink():
            link.symlink_to("/" + str(path.relative_to(root)))
            print(
                f"Created symlink /{link.relative_to(root)} → /{path.relative_to(root)}.",
                file=sys.stderr,
            )
    elif link.is_symlink():
        link.unlink()
        print(f"Removed /{link.relative_to(root)}.", file=sys.stderr)
    data["units"].setdefault(name, {})["enabled"] = on
    return 0


def main(argv: list[str], root: str) -> int:
    board = Path(root)
    now = "--now" in argv
    args = [
        a for i, a in enumerate(argv) if not a.startswith("-") and (i == 0 or argv[i - 1] != "-p")
    ]
    if not args:
        sys.stderr.write("systemctl simulator: no command\n")
        return 1
    cmd, units = args[0], [_unit(u) for u in args[1:]]
    data = _state(board)
    rc = 0
    if cmd == "is-active":
        states = [active_state(data["units"].get(u, {})) for u in units]
        print("\n".join(states))
        return 0 if states and all(s == "active" for s in states) else 3
    if cmd == "is-enabled":
        known = [u for u in units if u in data["units"] or unit_file(board, u)]
        if not known:
            sys.stderr.write(
                f"Failed to get unit file state for {units[0]}: No such file or directory\n"
            )
            return 1
        flags = [
            "enabled" if data["units"].get(u, {}).get("enabled") else "disabled" for u in known
        ]
        print("\n".join(flags))
        return 0 if all(f == "enabled" for f in flags) else 1
    if cmd == "show":
        # systemctl show -p PROP [-p PROP...] [--value] UNIT: KEY=VALUE lines in systemd's
        # own property order (not the order asked), or bare values with --value.
        asked = {argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-p"}
        name = units[-1] if units else ""
        unit = data["units"].get(name, {})
        environment = unit_environment(unit_text(board, name))
        values = {
            "NRestarts": str(restarts(unit)),
            "Environment": " ".join(f"{k}={v}" for k, v in environment.items()),
            "ActiveState": active_state(unit),
        }
        for prop, value in values.items():
            if prop in asked:
                print(value if "--value" in argv else f"{prop}={value}")
        return 0
    if cmd == "daemon-reload":
        data["reloads"] = data.get("reloads", 0) + 1
    elif cmd == "set-environment":
        data["environment"].update(dict(a.split("=", 1) for a in args[1:]))
    elif cmd in ("start", "stop", "restart"):
        for u in units:
            if cmd in ("stop", "restart"):
                rc |= stop(board, u, data)
            if cmd in ("start", "restart"):
                rc |= start(board, u, data)
    elif cmd in ("enable", "disable"):
        for u in units:
            rc |= enable(board, u, data, cmd == "enable")
            if now:
                rc |= (start if cmd == "enable" else stop)(board, u, data)
    else:
        sys.stderr.write(f"Unknown command verb {cmd}.\n")
        return 1
    sim.save(board, "systemd", data)
    return rc

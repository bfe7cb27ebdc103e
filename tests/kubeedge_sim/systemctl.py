"""A stand-in for systemctl on a fixture board (no systemd as PID 1 here).

Unit state lives below the board root in var/lib/kedge-sim/systemd.json:
{"units": {"kubelet.service": {"active": "active", "enabled": true}}}. Answers and exit
codes follow systemctl(1): is-active prints one state per unit and exits 0 only when all
are active (3 otherwise); unknown units are "inactive".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

STATE = "var/lib/kedge-sim/systemd.json"


def load(root: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((root / STATE).read_text())
    except FileNotFoundError:
        data = {}
    data.setdefault("units", {})
    return data


def _unit(name: str) -> str:
    return name if "." in name else f"{name}.service"


def main(argv: list[str], root: str) -> int:
    args = [a for a in argv if not a.startswith("-")]
    if not args:
        sys.stderr.write("systemctl simulator: no command\n")
        return 1
    cmd, units = args[0], [_unit(u) for u in args[1:]]
    state = load(Path(root))["units"]
    if cmd == "is-active":
        states = [state.get(u, {}).get("active", "inactive") for u in units]
        print("\n".join(states))
        return 0 if states and all(s == "active" for s in states) else 3
    if cmd == "is-enabled":
        found = [u for u in units if u in state]
        if not found:
            sys.stderr.write(
                f"Failed to get unit file state for {units[0]}: No such file or directory\n"
            )
            return 1
        flags = ["enabled" if state[u].get("enabled") else "disabled" for u in found]
        print("\n".join(flags))
        return 0 if all(f == "enabled" for f in flags) else 1
    sys.stderr.write(f"Unknown command verb {cmd}.\n")
    return 1

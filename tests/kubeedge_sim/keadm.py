"""A stand-in for keadm v1.13 (a Go/cobra binary that cannot run here).

Installed into a fixture board as /usr/local/bin/keadm by tests.harness.board. Its state
lives below the board root in var/lib/kedge-sim/keadm.json: {"version", "platform"}.
It answers like cobra does: unknown commands and flags are errors with exit 1.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

STATE = "var/lib/kedge-sim/keadm.json"
COMMANDS = ("version", "join", "reset", "gettoken", "init", "debug")
GIT_COMMITS = {"v1.13.0": "ee357a0d5e4b1c9e8a1c5c4f0d3c9b0b7a0d8e0f"}


def _state(root: Path) -> dict[str, str]:
    try:
        loaded: dict[str, str] = json.loads((root / STATE).read_text())
    except FileNotFoundError:
        loaded = {}
    return {"version": "v1.13.0", "platform": "linux/amd64", **loaded}


def _unknown_command(cmd: str) -> int:
    sys.stderr.write(
        f'Error: unknown command "{cmd}" for "keadm"\nRun \'keadm --help\' for usage.\n'
    )
    return 1


def _unknown_flag(flag: str) -> int:
    sys.stderr.write(f"Error: unknown flag: {flag}\n")
    return 1


def cmd_version(args: list[str], root: Path) -> int:
    for a in args:
        if a.startswith("-"):
            return _unknown_flag(a.split("=", 1)[0])
    st = _state(root)
    major, minor, _ = st["version"].lstrip("v").split(".")
    commit = GIT_COMMITS.get(st["version"], "0" * 40)
    print(
        f'version: version.Info{{Major:"{major}", Minor:"{minor}", GitVersion:"{st["version"]}", '
        f'GitCommit:"{commit}", GitTreeState:"clean", BuildDate:"2023-01-18T06:40:57Z", '
        f'GoVersion:"go1.17.13", Compiler:"gc", Platform:"{st["platform"]}"}}'
    )
    return 0


def main(argv: list[str], root: str) -> int:
    if not argv:
        print("keadm: KubeEdge installation tool (simulated)\n\nUsage:\n  keadm [command]")
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "version":
        return cmd_version(rest, Path(root))
    if cmd.startswith("-"):
        return _unknown_flag(cmd)
    if cmd not in COMMANDS:
        return _unknown_command(cmd)
    sys.stderr.write(f"keadm simulator: '{cmd}' is not simulated yet\n")
    return 1

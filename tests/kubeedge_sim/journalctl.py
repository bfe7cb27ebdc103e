"""A stand-in for journalctl: `journalctl -u UNIT [-n N] [--no-pager] [-x] [-e]` prints the
last lines the simulated unit wrote (see systemctl.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.kubeedge_sim import sim


def main(argv: list[str], root: str) -> int:
    unit, lines = None, 1000
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-u", "--unit"):
            unit, i = argv[i + 1], i + 1
        elif arg.startswith("--unit="):
            unit = arg.split("=", 1)[1]
        elif arg in ("-n", "--lines"):
            lines, i = int(argv[i + 1]), i + 1
        elif arg.startswith("--lines="):
            lines = int(arg.split("=", 1)[1])
        elif arg not in (
            "--no-pager",
            "-x",
            "-e",
            "-xe",
            "-q",
            "--quiet",
            "-o",
            "cat",
            "--output=cat",
        ):
            sys.stderr.write(f"journalctl: unrecognized option '{arg}'\n")
            return 1
        i += 1
    if unit is None:
        sys.stderr.write("journalctl simulator: only -u UNIT is simulated\n")
        return 1
    name = unit if "." in unit else f"{unit}.service"
    path = sim.journal(Path(root), name)
    text = path.read_text(errors="replace") if path.exists() else ""
    if not text:
        print("-- No entries --")
        return 0
    print("\n".join(text.splitlines()[-lines:]))
    return 0

"""A stand-in for chronyc. `chronyc makestep` answers "200 OK" and steps the board's
simulated clock: the offset file the test's SNTP server serves from becomes 0."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.kubeedge_sim.sim import SIM_DIR

OFFSET_FILE = f"{SIM_DIR}/clock-offset"


def main(argv: list[str], root: str) -> int:
    if argv[:1] != ["makestep"]:
        sys.stderr.write(f"Unrecognized command: {' '.join(argv)}\n")
        return 1
    path = Path(root) / OFFSET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("0\n")
    print("200 OK")
    return 0

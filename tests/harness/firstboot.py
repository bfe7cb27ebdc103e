"""A fixture board as a freshly flashed one: its hardware identity (a device-tree serial,
a wired NIC's MAC), a seed on its boot partition, and its first boot's record to read."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.harness.board import REPO, Board

AGENT = str(Path(sys.executable).with_name("kedge-agent"))
SEED_AT = "/boot/firmware/kedge-seed.toml"
# Short bounds, the same shape as the defaults (docs/firstboot.md).
QUICK = {"network_wait_s": 60, "clock_wait_s": 1, "pending_wait_s": 60, "blocked_wait_s": 0,
         "backoff_s": 0.2, "backoff_cap_s": 1}  # fmt: skip


def give_identity(board: Board, serial: str, mac: str) -> None:
    board.write("/proc/device-tree/serial-number", serial + "\0")
    board.write("/sys/class/net/eth0/address", mac + "\n")
    board.mkdir("/sys/class/net/eth0/device")


def place_seed(board: Board, text: str, where: str = SEED_AT) -> Path:
    return board.write(where, text, 0o600)


def progress(board: Board) -> dict[str, Any] | None:
    path = board.path("/var/lib/kedge-agent/firstboot.json")
    try:
        return dict(json.loads(path.read_text())["progress"])
    except (FileNotFoundError, json.JSONDecodeError):
        return None  # not yet, or caught between write and rename (never: it is atomic)


def agent_unit(board: Board, *extra: str) -> None:
    """kedge-agent.service on the board's systemctl: `kedge-agent run` on this board."""
    board.write(
        "/lib/systemd/system/kedge-agent.service",
        (REPO / "systemd/kedge-agent.service").read_text(),
    )
    path = board.path("/var/lib/kedge-sim/systemd.json")
    data = json.loads(path.read_text()) if path.exists() else {"units": {}}
    argv = [AGENT, "run", "--root", str(board.root), "--config", str(board.config_path), *extra]
    data.setdefault("units", {})["kedge-agent.service"] = {"exec": argv}
    board.write("/var/lib/kedge-sim/systemd.json", json.dumps(data))


def timeline(p: dict[str, Any]) -> list[str]:
    """The phases with what each took, as the closing note shows them."""
    from datetime import datetime

    lines = []
    for t in p["timeline"]:
        start = datetime.fromisoformat(t["started_at"])
        end = datetime.fromisoformat(t["finished_at"]) if t["finished_at"] else None
        took = f"{(end - start).total_seconds():6.2f} s" if end else "   ...  "
        lines.append(f"{t['phase']:10} {took}  {t['outcome']}")
    return lines

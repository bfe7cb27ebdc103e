"""State shared by the simulated tools of one fixture board, kept below its root."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import psutil

SIM_DIR = "var/lib/kedge-sim"


def load(root: Path, name: str) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads((root / SIM_DIR / f"{name}.json").read_text())
    except FileNotFoundError:
        data = {}
    return data


def save(root: Path, name: str, data: dict[str, Any]) -> None:
    path = root / SIM_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def journal(root: Path, unit: str) -> Path:
    path = root / SIM_DIR / "journal" / f"{unit}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def faults(root: Path) -> dict[str, Any]:
    return load(root, "faults")


def programs_running(*names: str) -> list[int]:
    """pidof: zombies (exited, not yet reaped) do not count."""
    found = []
    for p in psutil.process_iter(["name", "exe", "status"]):
        if p.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        exe = Path(p.info["exe"] or "").name
        if exe in names or p.info["name"] in names:
            found.append(p.pid)
    return found

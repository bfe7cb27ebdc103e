"""Human-readable check output: a symbol *and* a word per line, colour only on a TTY."""

from __future__ import annotations

import os
from typing import TextIO

from agent.checks.registry import Check
from kedge.wire import CheckReport, Status

SYMBOLS = {
    Status.PASS: ("✓", "32"),
    Status.WARN: ("!", "33"),
    Status.FAIL: ("✗", "31"),
    Status.SKIP: ("-", "2"),
    Status.ERROR: ("?", "35"),
}


def use_colour(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def _paint(text: str, code: str, colour: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if colour else text


def render_report(report: CheckReport, *, colour: bool) -> str:
    width = max((len(c.id) for c in report.checks), default=0)
    lines = [f"kedge-agent check: node {report.node}, KubeEdge {report.kubeedge_version}", ""]
    for c in report.checks:
        symbol, code = SYMBOLS[c.status]
        mark = _paint(f"{symbol} {c.status.value:<5}", code, colour)
        lines.append(f"{mark}  {c.id:<{width}}  {c.summary}")
        if c.status is not Status.PASS and c.remedy:
            lines.extend(f"{' ' * (width + 11)}{line}" for line in c.remedy.splitlines())
    counts = report.counts()
    tally = ", ".join(f"{counts[s]} {s.value}" for s in Status if counts[s])
    lines.append("")
    # The leftovers check knows when this board is already joined (kedge's join record)
    joined = any(c.id == "leftovers" and c.details.get("joined") for c in report.checks)
    if joined:
        verdict = "joined, nothing in the way" if report.ok else "joined, with problems"
    elif report.ok:
        verdict = "ready to join" if not counts[Status.WARN] else "ready to join, with warnings"
    else:
        verdict = "not ready to join"
    lines.append(f"{tally} in {report.duration_ms} ms: {verdict}.")
    return "\n".join(lines) + "\n"


def render_list(checks: list[Check]) -> str:
    width = max(len(c.id) for c in checks)
    rows = [f"{c.id:<{width}}  {c.description}" for c in checks]
    needs = [f"{c.id} needs {', '.join(c.needs)}" for c in checks if c.needs]
    return "\n".join(rows + (["", *needs] if needs else [])) + "\n"

"""Asking before a mutation: --yes, or a y/N question on a terminal, or a refusal."""

from __future__ import annotations

import sys

from kedge.errors import UserError


def confirm(question: str, *, yes: bool, command: str) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UserError(f"refusing to {command} without --yes: there is no terminal to ask on")
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")

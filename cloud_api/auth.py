"""The admin token: a file created 0600 on first start, compared in constant time."""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

ADMIN_TOKEN_FILENAME = "admin.token"  # noqa: S105 - a file name


def load_or_create_admin_token(state_dir: Path) -> str:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / ADMIN_TOKEN_FILENAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(token + "\n")
    return token


def bearer_matches(header: str | None, token: str) -> bool:
    if not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), token.encode())

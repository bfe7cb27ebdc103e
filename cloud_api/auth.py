"""The admin token: made on first start (written atomically, 0600), refused at start
when it is empty or short, compared in constant time, never matched by an empty or
non-ASCII credential."""

from __future__ import annotations

import hmac
import re
import secrets
from pathlib import Path

from kedge.errors import ConfigError
from kedge.private_files import write_private

ADMIN_TOKEN_FILENAME = "admin.token"  # noqa: S105 - a file name
MIN_TOKEN_CHARS = 32
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]+")


def load_or_create_admin_token(state_dir: Path) -> str:
    """The token in <state_dir>/admin.token, made when there is none. ConfigError (exit 2)
    for a token file that is unreadable, empty, short or not a token: an empty stored
    token must never be usable."""
    path = state_dir / ADMIN_TOKEN_FILENAME
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        try:
            write_private(path, token + "\n")
        except OSError as exc:
            raise ConfigError(
                f"cannot create the admin token {path}: {exc.strerror or exc} "
                "(free space or fix the state directory's permissions, then start again)"
            ) from exc
        return token
    except OSError as exc:
        raise ConfigError(f"cannot read the admin token {path}: {exc.strerror}") from exc
    token = text.strip(" \t\r\n")
    if len(token) < MIN_TOKEN_CHARS or not _TOKEN_RE.fullmatch(token):
        raise ConfigError(
            f"the admin token {path} is empty, short or damaged ({len(token)} characters, "
            f"at least {MIN_TOKEN_CHARS} of [A-Za-z0-9_-] expected): remove the file and start "
            "again to make a new one"
        )
    return token


def bearer_matches(header: str | None, token: str) -> bool:
    """`Authorization: Bearer <token>`; the scheme in any case (RFC 7235 §2.1: schemes
    are case-insensitive, so `bearer` is the same). Only ASCII space and tab around the
    credential are ignored: str.strip() would also remove U+00A0 and U+3000, turning a
    "blank" credential into an empty one."""
    scheme = "bearer "
    if not token or not header or not header.isascii() or header[:7].lower() != scheme:
        return False
    presented = header[len(scheme) :].strip(" \t")
    if not presented:
        return False
    return hmac.compare_digest(presented.encode("ascii"), token.encode("ascii"))

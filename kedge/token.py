"""KubeEdge join tokens: `<sha256 of the CA's DER>.<JWT header>.<JWT payload>.<JWT sig>`.

The JWT is HS256 signed with the CA key, which the board never has; only its `exp`
claim is read here. The token itself is a secret: nothing here prints it.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime

WRONG_FORMAT = "token credentials are in the wrong format"
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class JoinToken:
    ca_hash: str
    expires_at: datetime | None


def parse_token(token: str) -> JoinToken:
    """Split and decode a token the way cloudcore and edgecore do; ValueError if malformed."""
    parts = token.strip().split(".")
    if len(parts) != 4:
        raise ValueError(f"{WRONG_FORMAT}: {len(parts)} dot-separated parts, expected 4")
    if not _HEX64.fullmatch(parts[0]):
        raise ValueError(f"{WRONG_FORMAT}: the first part is not a SHA-256 hex digest")
    try:
        payload = json.loads(_b64url(parts[2]))
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"{WRONG_FORMAT}: the JWT payload is not base64url JSON") from exc
    exp = payload.get("exp") if isinstance(payload, dict) else None
    expires = datetime.fromtimestamp(exp, UTC) if isinstance(exp, int | float) else None
    return JoinToken(parts[0], expires)


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

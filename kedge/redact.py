"""One redaction for every log line, job line and report: named secrets, and anything
shaped like a KubeEdge token, a JWT or a bearer credential."""

from __future__ import annotations

import re

REDACTED = "<redacted>"
# A KubeEdge join token (CA hash + JWT), a bare JWT, a bearer credential.
_PATTERNS = (
    re.compile(r"\b[0-9a-f]{64}\.[\w-]+\.[\w-]+\.[\w-]+"),
    re.compile(r"\beyJ[\w-]*\.[\w-]+\.[\w-]+"),
    re.compile(r"(Bearer\s+)\S+", re.IGNORECASE),
)


def redact(text: str, *secrets: str) -> str:
    for secret in secrets:
        if not secret:
            continue
        text = text.replace(secret, REDACTED)
        # edgecore may log a token's JWT part alone.
        _, _, jwt = secret.partition(".")
        if jwt:
            text = text.replace(jwt, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text

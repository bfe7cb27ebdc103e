"""One JSON-over-HTTP call for the tests that talk to the cloud API (urllib: the tests
see exactly what a plain client sees, errors included)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any


def call_json(
    method: str,
    url: str,
    *,
    data: bytes | None = None,
    token: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], Any]:
    """(status, headers, decoded body) for any status, 4xx and 5xx included."""
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        # The error answer holds the connection: closed here, not by the garbage collector.
        with exc:
            return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259)")


def strict_loads(text: str | bytes) -> Any:
    """JSON as a strict reader (a browser's JSON.parse, Go, jq) reads it: Python's json
    module would accept NaN and Infinity."""
    return json.loads(text, parse_constant=_refuse_constant)


def get_text(url: str, token: str | None = None, timeout: float = 10) -> tuple[int, str]:
    """(status, body as text) of a GET, for reading what the server really wrote."""
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()

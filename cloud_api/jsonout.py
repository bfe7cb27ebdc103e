"""Every JSON document the API writes, strict: RFC 8259 has no NaN or Infinity, and one
such value in a page (Python's json module writes `Infinity` by default) makes the whole
page unreadable to a browser's JSON.parse, Go or jq. Input is refused non-finite where it
arrives (kedge.wire); this is the second line: whatever slipped into the store before is
written as null, never as a token a strict reader rejects."""

from __future__ import annotations

from typing import Any

import pydantic_core
from aiohttp import web


def to_json(value: Any) -> bytes:
    return pydantic_core.to_json(value, inf_nan_mode="null")


def dumps(value: Any) -> str:
    return to_json(value).decode()


def json_response(
    data: Any = None,
    *,
    text: str | None = None,
    body: bytes | None = None,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """aiohttp's json_response with the strict writer (text= and body= are documents
    already written strictly, by pydantic's model_dump_json or to_json)."""
    if text is None and body is None:
        body = to_json(data)
    return web.json_response(text=text, body=body, status=status, headers=headers)

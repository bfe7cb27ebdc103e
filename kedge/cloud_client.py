"""A small client of the cloud API (used by the kedge-cloud-api CLI verbs and by
`kedge-agent enroll`): JSON in and out, server-sent events for jobs, and one exception
boundary: every transport failure becomes ClientError, every error answer ApiAnswerError."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
from pydantic import BaseModel, TypeAdapter, ValidationError

from kedge.errors import first_problem

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class ClientError(Exception):
    """The API could not be reached or answered something that is not the API."""


class ApiAnswerError(ClientError):
    """The API answered with its error shape."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


class ApiClient:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        ca_file: Path | None = None,
        ca_sha256: str | None = None,
    ) -> None:
        self.url, self.token, self.timeout, self.ca_file = url.rstrip("/"), token, timeout, ca_file
        # A pinned certificate (a first-boot seed's ca_sha256): its SHA-256 is the trust,
        # whatever signed it — aiohttp checks it on every connection.
        self.pin = aiohttp.Fingerprint(bytes.fromhex(ca_sha256)) if ca_sha256 else None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        try:
            # A private CA (the API's own certificate) instead of the system's trust store.
            context = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None
        except (OSError, ssl.SSLError) as exc:
            raise ClientError(
                f"CA file {self.ca_file}: {getattr(exc, 'strerror', None) or exc}"
            ) from exc
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout, sock_read=self.timeout),
            connector=aiohttp.TCPConnector(ssl=self.pin or context or True),
        )
        return self

    async def __aexit__(
        self, *exc: type[BaseException] | BaseException | TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        assert self._session is not None, "use ApiClient as an async context manager"
        try:
            async with self._session.request(
                method, self.url + path, json=body, headers=self._headers()
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except aiohttp.ServerFingerprintMismatch as exc:
            raise ClientError(
                f"the cloud API at {self.url} is not the one pinned: its certificate's SHA-256 is "
                f"{exc.got.hex()}, the seed pins {exc.expected.hex()}"
            ) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ClientError(
                f"cannot reach the cloud API at {self.url}: {exc or type(exc).__name__}"
            ) from exc
        try:
            data = json.loads(raw) if raw else None
        except ValueError as exc:
            raise ClientError(
                f"{self.url}{path} answered HTTP {status} with something that is not JSON"
            ) from exc
        if status >= 400:
            err = data.get("error") if isinstance(data, dict) else None
            if not isinstance(err, dict):
                raise ClientError(
                    f"{self.url}{path} answered HTTP {status} without the API's error shape"
                )
            raise ApiAnswerError(
                status,
                str(err.get("code")),
                str(err.get("message")),
                dict(err.get("details") or {}),
            )
        return status, data

    async def fetch(
        self, method: str, path: str, answer: type[M], body: BaseModel | None = None
    ) -> M:
        """call(), with the answer read into `answer` (ClientError if it does not fit)."""
        _, data = await self.call(method, path, _json(body))
        return _read(TypeAdapter(answer), data, f"{self.url}{path}")

    async def fetch_list(self, path: str, item: type[M]) -> list[M]:
        _, data = await self.call("GET", path)
        items: TypeAdapter[list[M]] = TypeAdapter(list[item])  # type: ignore[valid-type]
        return _read(items, data, f"{self.url}{path}")

    async def events(
        self, path: str, *, after: int | None = None
    ) -> AsyncIterator[tuple[str, Any]]:
        """(event, data) from a server-sent event stream; keep-alive comments are skipped.
        `after`: the events after that id (-1: from the first), as Last-Event-ID."""
        assert self._session is not None, "use ApiClient as an async context manager"
        event, data = "message", ""
        try:
            headers = self._headers()
            if after is not None:
                headers["Last-Event-ID"] = str(after)
            async with self._session.get(self.url + path, headers=headers) as resp:
                if resp.status >= 400:
                    raise ClientError(f"{self.url}{path} answered HTTP {resp.status}")
                async for raw in resp.content:
                    line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                    if line.startswith(":"):
                        continue
                    if not line:
                        if data:
                            yield event, json.loads(data)
                        event, data = "message", ""
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data += line[5:].strip()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ClientError(
                f"lost the event stream from {self.url}: {exc or type(exc).__name__}"
            ) from exc


def _json(body: BaseModel | None) -> Any:
    return None if body is None else body.model_dump(mode="json", exclude_none=True)


def _read(adapter: TypeAdapter[T], data: Any, where: str) -> T:
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise ClientError(
            f"{where} answered something this version does not understand ({first_problem(exc, 'answer')}): "
            "are the client and the service the same version?"
        ) from exc

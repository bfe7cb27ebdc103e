"""The Docker Engine API over its unix socket, spoken with aiohttp.

Only the calls kedge needs. aiohttp and socket errors are mapped to DockerError /
DockerUnavailable here, so no caller ever sees a lower-layer exception.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote

import aiohttp

from agent.errors import DockerError, DockerUnavailable

_BASE = "http://docker"


@contextlib.contextmanager
def _mapped(socket_path: str, what: str) -> Iterator[None]:
    try:
        yield
    except TimeoutError as exc:
        raise DockerUnavailable(f"{what}: no answer from {socket_path} in time") from exc
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror if exc.os_error else str(exc)
        raise DockerUnavailable(f"{what}: cannot connect to {socket_path}: {reason}") from exc
    except aiohttp.ClientError as exc:
        raise DockerUnavailable(f"{what}: {socket_path}: {exc}") from exc


class DockerClient:
    """An async Docker Engine API client bound to one unix socket.

    Use as `async with DockerClient(path) as docker: ...`; every call has a timeout.
    """

    def __init__(self, socket_path: str, *, timeout: float = 5.0) -> None:
        self.socket_path = socket_path
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> DockerClient:
        connector = aiohttp.UnixConnector(path=self.socket_path)
        self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("DockerClient used outside `async with`")
        return self._session

    @contextlib.asynccontextmanager
    async def _request(
        self, method: str, path: str, what: str, **kwargs: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        with _mapped(self.socket_path, what):
            async with self.session.request(method, _BASE + path, **kwargs) as resp:
                yield resp

    async def _json(self, path: str, what: str) -> Any:
        async with self._request("GET", path, what) as resp:
            if resp.status != 200:
                raise DockerError(f"{what}: {await _message(resp)}", resp.status)
            with _mapped(self.socket_path, what):
                return await resp.json()

    async def ping(self) -> str:
        async with self._request("GET", "/_ping", "ping") as resp:
            body = await resp.text()
            if resp.status != 200:
                raise DockerError(f"ping: HTTP {resp.status}: {body.strip()}", resp.status)
            return body.strip()

    async def version(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("/version", "version")
        return result

    async def info(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("/info", "info")
        return result

    async def image_exists(self, ref: str) -> bool:
        """Whether the image is present locally (never pulls)."""
        what = f"inspect {ref}"
        async with self._request("GET", f"/images/{quote(ref, safe='/:@')}/json", what) as resp:
            if resp.status == 200:
                return True
            if resp.status == 404:
                return False
            raise DockerError(f"{what}: {await _message(resp)}", resp.status)


async def _message(resp: aiohttp.ClientResponse) -> str:
    try:
        body = await resp.json(content_type=None)
        if isinstance(body, dict) and "message" in body:
            return f"HTTP {resp.status}: {body['message']}"
    except (ValueError, aiohttp.ClientError):
        pass
    return f"HTTP {resp.status}"

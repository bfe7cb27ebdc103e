"""The Docker Engine API over its unix socket, spoken with aiohttp.

Only the calls kedge needs. aiohttp and socket errors are mapped to DockerError /
DockerUnavailable here, so no caller ever sees a lower-layer exception.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from kedge.errors import DockerError, DockerUnavailable

_BASE = "http://docker"
_NO_AUTH = base64.urlsafe_b64encode(b"{}").decode()
PULL_TIMEOUT = 900.0


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    image: str
    state: str


def split_ref(ref: str) -> tuple[str, str]:
    """'repo[:tag]' → (repo, tag); a ':' inside a registry host:port is not a tag."""
    repo, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return repo, tag


@contextlib.contextmanager
def _mapped(socket_path: str, what: str) -> Iterator[None]:
    try:
        yield
    except TimeoutError as exc:
        raise DockerUnavailable(f"{what}: no answer from {socket_path} in time") from exc
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror if exc.os_error else str(exc)
        raise DockerUnavailable(f"{what}: cannot connect to {socket_path}: {reason}") from exc
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as exc:
        raise DockerUnavailable(
            f"{what}: docker stopped answering on {socket_path} in the middle of it "
            "(dockerd stopped, crashed or restarted)"
        ) from exc
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

    async def _stream(
        self,
        method: str,
        path: str,
        what: str,
        progress: Callable[[dict[str, Any]], None] | None,
        **kw: Any,
    ) -> None:
        """Follow a JSON-lines progress stream; an {"error": …} line raises DockerError."""
        timeout = aiohttp.ClientTimeout(total=PULL_TIMEOUT, sock_read=120)
        async with self._request(method, path, what, timeout=timeout, **kw) as resp:
            if resp.status != 200:
                raise DockerError(f"{what}: {await _message(resp)}", resp.status)
            with _mapped(self.socket_path, what):
                async for raw in resp.content:
                    line = raw.strip()
                    if not line:
                        continue
                    try:
                        msg = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(msg, dict) and msg.get("error"):
                        raise DockerError(f"{what}: {msg['error']}")
                    if progress is not None and isinstance(msg, dict):
                        progress(msg)

    async def pull(
        self, ref: str, progress: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        repo, tag = split_ref(ref)
        query = f"fromImage={quote(repo, safe='')}&tag={quote(tag, safe='')}"
        await self._stream(
            "POST",
            f"/images/create?{query}",
            f"pull {ref}",
            progress,
            headers={"X-Registry-Auth": _NO_AUTH},
        )

    async def tag(self, source: str, target: str) -> None:
        repo, tag = split_ref(target)
        path = f"/images/{quote(source, safe='/:@')}/tag?repo={quote(repo, safe='')}&tag={quote(tag, safe='')}"
        async with self._request("POST", path, f"tag {source} as {target}") as resp:
            if resp.status != 201:
                raise DockerError(f"tag {source} as {target}: {await _message(resp)}", resp.status)

    async def load(
        self, archive: Path, progress: Callable[[dict[str, Any]], None] | None = None
    ) -> None:
        """Load a `docker save` tarball (offline sites)."""
        with archive.open("rb") as fh:
            await self._stream(
                "POST", "/images/load", f"load {archive}", progress,
                data=fh, headers={"Content-Type": "application/x-tar"},
            )  # fmt: skip

    async def containers(self) -> list[Container]:
        items = await self._json("/containers/json?all=1", "list containers")
        return [
            Container(
                c["Id"],
                (c.get("Names") or ["/?"])[0].lstrip("/"),
                c.get("Image", ""),
                c.get("State", ""),
            )
            for c in items
        ]

    async def remove_container(self, name_or_id: str) -> bool:
        """Force-remove a container; False when it was already gone."""
        what = f"remove container {name_or_id}"
        async with self._request(
            "DELETE", f"/containers/{quote(name_or_id)}?force=1&v=1", what
        ) as resp:
            if resp.status in (200, 204):
                return True
            if resp.status == 404:
                return False
            raise DockerError(f"{what}: {await _message(resp)}", resp.status)

    async def image_exists(self, ref: str) -> bool:
        """Whether the image is present locally (never pulls)."""
        return await self.image_architecture(ref) is not None

    async def image_architecture(self, ref: str) -> str | None:
        """The architecture a local image is built for ("amd64", "arm64", ...); None
        when the image is not here (never pulls)."""
        body = await self._inspect_image(ref)
        if body is None:
            return None
        return str(body.get("Architecture") or "unknown")

    async def image_entrypoint(self, ref: str) -> list[str] | None:
        """A local image's entrypoint; None when it has none or is not here."""
        body = await self._inspect_image(ref)
        config = (body or {}).get("Config")
        entrypoint = config.get("Entrypoint") if isinstance(config, dict) else None
        return (
            [str(word) for word in entrypoint]
            if isinstance(entrypoint, list) and entrypoint
            else None
        )

    async def _inspect_image(self, ref: str) -> dict[str, Any] | None:
        what = f"inspect {ref}"
        async with self._request("GET", f"/images/{quote(ref, safe='/:@')}/json", what) as resp:
            if resp.status == 404:
                return None
            if resp.status != 200:
                raise DockerError(f"{what}: {await _message(resp)}", resp.status)
            body = await resp.json(content_type=None)
        return body if isinstance(body, dict) else {}


async def _message(resp: aiohttp.ClientResponse) -> str:
    try:
        body = await resp.json(content_type=None)
        if isinstance(body, dict) and "message" in body:
            return f"HTTP {resp.status}: {body['message']}"
    except (ValueError, aiohttp.ClientError):
        pass
    return f"HTTP {resp.status}"

"""Just enough of the Kubernetes CRI (runtime.v1, gRPC over HTTP/2 on a unix socket) to
ask a container runtime what `keadm join` and edgecore will ask it: does it serve the
CRI, which version, is it ready, is an image there, pull one.

gRPC without grpcio: the arm64 package bundles its Python dependencies, and grpcio
with protobuf would add tens of megabytes for five calls. HTTP/2 comes from `h2` (pure
Python, python-hyper); the five messages are encoded by hand below, their field
numbers from k8s.io/cri-api/pkg/apis/runtime/v1/api.proto.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import unquote

import h2.config
import h2.connection
import h2.events

from kedge.errors import HostError

RUNTIME = "runtime.v1.RuntimeService"
IMAGES = "runtime.v1.ImageService"
GRPC_UNIMPLEMENTED = 12
_MAX_MESSAGE = 4 * 1024 * 1024


class CriError(HostError):
    """The runtime did not answer the CRI call (`code` is the gRPC status, None when the
    socket itself failed)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class CriVersion:
    runtime_name: str
    runtime_version: str
    runtime_api_version: str


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool
    reason: str
    message: str


# -- protobuf, the little of it the CRI needs ---------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number: int, value: bytes | str) -> bytes:
    """A length-delimited field (string or embedded message)."""
    raw = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(raw)) + raw


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field: ints for varints, bytes otherwise."""
    pos = 0

    def varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            if pos >= len(data):
                raise CriError("malformed answer from the runtime (truncated varint)")
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    while pos < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, varint()
        elif wire == 2:
            size = varint()
            yield number, data[pos : pos + size]
            pos += size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            yield number, data[pos : pos + width]
            pos += width
        else:
            raise CriError(f"malformed answer from the runtime (wire type {wire})")


def _text(data: bytes) -> dict[int, str]:
    return {n: v.decode(errors="replace") for n, v in fields(data) if isinstance(v, bytes)}


# -- the client ------------------------------------------------------------------------------
@dataclass(frozen=True)
class PodSandbox:
    id: str
    namespace: str
    name: str
    uid: str


class CriClient:
    def __init__(self, endpoint: str, timeout: float = 10.0) -> None:
        if not endpoint.startswith("unix://"):
            raise CriError(f"{endpoint}: only unix:// CRI endpoints are supported")
        self.endpoint, self.socket, self.timeout = (
            endpoint,
            endpoint.removeprefix("unix://"),
            timeout,
        )

    async def version(self) -> CriVersion:
        got = _text(await self.call(RUNTIME, "Version", field(1, "v1")))
        return CriVersion(got.get(2, ""), got.get(3, ""), got.get(4, ""))

    async def conditions(self) -> list[Condition]:
        """RuntimeReady and NetworkReady, with the runtime's reason when not."""
        answer = await self.call(RUNTIME, "Status", b"")
        found = []
        for n, status in fields(answer):
            if n != 1 or not isinstance(status, bytes):
                continue
            for m, cond in fields(status):
                if m == 1 and isinstance(cond, bytes):
                    parts = dict(fields(cond))
                    text = _text(cond)
                    found.append(Condition(text.get(1, ""), bool(parts.get(2, 0)),
                                           text.get(3, ""), text.get(4, "")))  # fmt: skip
        return found

    async def image_id(self, ref: str) -> str | None:
        """The image's id when the runtime has `ref`, else None."""
        answer = await self.call(IMAGES, "ImageStatus", field(1, field(1, ref)))
        for n, image in fields(answer):
            if n == 1 and isinstance(image, bytes):
                return _text(image).get(1) or None
        return None

    async def pull(self, ref: str, timeout: float = 600.0) -> str:
        answer = await self.call(IMAGES, "PullImage", field(1, field(1, ref)), timeout=timeout)
        return _text(answer).get(1, "")

    async def pods(self) -> list[PodSandbox]:
        """Every pod sandbox the runtime holds (ListPodSandbox, no filter)."""
        found = []
        for n, item in fields(await self.call(RUNTIME, "ListPodSandbox", b"")):
            if n != 1 or not isinstance(item, bytes):
                continue
            text, meta = _text(item), {}
            for m, value in fields(item):
                if m == 2 and isinstance(value, bytes):
                    meta = _text(value)
            found.append(
                PodSandbox(text.get(1, ""), meta.get(3, ""), meta.get(1, ""), meta.get(2, ""))
            )
        return found

    async def remove_pod(self, pod_id: str) -> None:
        """Stop the pod (its containers, its network) and remove it, as `keadm reset` does."""
        await self.call(RUNTIME, "StopPodSandbox", field(1, pod_id), timeout=60)
        await self.call(RUNTIME, "RemovePodSandbox", field(1, pod_id), timeout=60)

    async def call(self, service: str, method: str, message: bytes, *,
                   timeout: float | None = None) -> bytes:  # fmt: skip
        try:
            async with asyncio.timeout(timeout or self.timeout):
                return await self._call(f"/{service}/{method}", message)
        except TimeoutError:
            raise CriError(
                f"{self.endpoint} did not answer {method} within {timeout or self.timeout:g} s"
            ) from None
        except OSError as exc:
            raise CriError(f"cannot reach {self.endpoint}: {exc.strerror or exc}") from exc

    async def _call(self, path: str, message: bytes) -> bytes:
        reader, writer = await asyncio.open_unix_connection(self.socket)
        try:
            conn = h2.connection.H2Connection(
                h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
            )
            conn.initiate_connection()
            stream = conn.get_next_available_stream_id()
            conn.send_headers(stream, [
                (":method", "POST"), (":scheme", "http"), (":path", path),
                (":authority", "localhost"), ("content-type", "application/grpc"), ("te", "trailers"),
            ])  # fmt: skip
            conn.send_data(
                stream, b"\0" + struct.pack(">I", len(message)) + message, end_stream=True
            )
            writer.write(conn.data_to_send())
            await writer.drain()
            return await _answer(conn, stream, reader, writer, path)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def _answer(conn: h2.connection.H2Connection, stream: int, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter, path: str) -> bytes:  # fmt: skip
    body = bytearray()
    headers: dict[str, str] = {}
    while True:
        data = await reader.read(65536)
        if not data:
            raise CriError(f"the runtime closed the connection during {path}")
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                headers |= {str(k): str(v) for k, v in event.headers or []}
            elif isinstance(event, h2.events.DataReceived) and event.stream_id == stream:
                body += event.data or b""
                if len(body) > _MAX_MESSAGE + 5:
                    raise CriError(f"the answer to {path} is larger than {_MAX_MESSAGE} bytes")
                conn.acknowledge_received_data(event.flow_controlled_length, stream)
            elif isinstance(event, h2.events.StreamReset) and event.stream_id == stream:
                raise CriError(f"the runtime reset the stream of {path} (code {event.error_code})")
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id == stream:
                return _grpc_message(headers, bytes(body), path)
        writer.write(conn.data_to_send())
        await writer.drain()


def _grpc_message(headers: dict[str, str], body: bytes, path: str) -> bytes:
    status = int(headers.get("grpc-status", "0") or 0)
    if status != 0:
        message = unquote(headers.get("grpc-message", ""))
        raise CriError(message or f"{path} failed with gRPC status {status}", code=status)
    if len(body) < 5:
        return b""
    (size,) = struct.unpack(">I", body[1:5])
    return body[5 : 5 + size]

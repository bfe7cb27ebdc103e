"""Network probes: SNTP, TCP, TLS and HTTP(S), each bounded by a deadline.

Every socket error or timeout becomes a ProbeError carrying a short reason
("connection refused", "timed out after 3 s"), chained to the original.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import os
import ssl
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp

from kedge.errors import ProbeError

NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01


@contextlib.contextmanager
def _mapped(target: str, timeout: float) -> Iterator[None]:
    try:
        yield
    except TimeoutError as exc:
        raise ProbeError(f"{target}: timed out after {timeout:g} s") from exc
    except ssl.SSLCertVerificationError as exc:
        raise ProbeError(f"{target}: x509: {exc.verify_message}") from exc
    except ssl.SSLError as exc:
        raise ProbeError(f"{target}: TLS error: {exc.reason or exc}") from exc
    except aiohttp.ClientConnectorError as exc:
        reason = exc.os_error.strerror if exc.os_error else str(exc)
        raise ProbeError(f"{target}: {(reason or 'cannot connect').lower()}") from exc
    except aiohttp.ClientError as exc:
        raise ProbeError(f"{target}: {exc}") from exc
    except OSError as exc:
        # asyncio words refusals as "Connect call failed (...)"; errno says it plainly.
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ProbeError(f"{target}: {reason.lower()}") from exc


# -- SNTP (RFC 4330) ---------------------------------------------------------
@dataclass(frozen=True)
class SntpSample:
    server: str
    offset_s: float  # server time minus local time
    delay_s: float


class _SntpProtocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


def _to_ntp(ts: float) -> bytes:
    secs = ts + NTP_EPOCH_OFFSET
    return struct.pack("!II", int(secs), int((secs % 1) * 2**32))


def _from_ntp(raw: bytes) -> float:
    secs, frac = struct.unpack("!II", raw)
    return float(secs - NTP_EPOCH_OFFSET + frac / 2**32)


async def sntp_query(host: str, port: int = 123, *, timeout: float = 2.0) -> SntpSample:
    """One SNTP exchange with `host`; the offset is what to add to local time."""
    target = f"ntp {host}:{port}"
    loop = asyncio.get_running_loop()
    transport: asyncio.DatagramTransport | None = None
    with _mapped(target, timeout):
        async with asyncio.timeout(timeout):
            transport, proto = await loop.create_datagram_endpoint(
                _SntpProtocol, remote_addr=(host, port)
            )
            try:
                t1 = time.time()
                request = b"\x23" + b"\x00" * 39 + _to_ntp(t1)
                transport.sendto(request)
                reply = await proto.answer
                t4 = time.time()
            finally:
                transport.close()
    if len(reply) < 48:
        raise ProbeError(f"{target}: short reply ({len(reply)} bytes)")
    mode, stratum = reply[0] & 0x07, reply[1]
    if mode != 4 or stratum == 0:
        raise ProbeError(f"{target}: not a usable server reply (mode {mode}, stratum {stratum})")
    if reply[24:32] != request[40:48]:
        raise ProbeError(f"{target}: reply does not answer our request")
    t2, t3 = _from_ntp(reply[32:40]), _from_ntp(reply[40:48])
    return SntpSample(f"{host}:{port}", ((t2 - t1) + (t3 - t4)) / 2, (t4 - t1) - (t3 - t2))


# -- TCP / TLS ---------------------------------------------------------------
async def tcp_connect(host: str, port: int, *, timeout: float = 3.0) -> float:
    """Open and close a TCP connection; return the time it took in milliseconds."""
    start = time.monotonic()
    with _mapped(f"{host}:{port}", timeout):
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return (time.monotonic() - start) * 1000


def _insecure_context() -> ssl.SSLContext:
    # The board fetches the CA exactly like edgecore does: without verification,
    # then pins it by the hash in the token.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def tls_peer_certificate(host: str, port: int, *, timeout: float = 3.0) -> bytes:
    """The DER certificate a TLS server presents, unverified."""
    with _mapped(f"{host}:{port}", timeout):
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(
                host, port, ssl=_insecure_context(), server_hostname=host
            )
        try:
            sslobj = writer.get_extra_info("ssl_object")
            der = sslobj.getpeercert(binary_form=True) if sslobj else None
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
    if not der:
        raise ProbeError(f"{host}:{port}: server sent no certificate")
    return bytes(der)


async def tls_verify(host: str, port: int, ca_der: bytes, *, timeout: float = 3.0) -> None:
    """Handshake verifying the server against `ca_der` and `host`, as edgecore does."""
    ctx = ssl.create_default_context(cadata=ssl.DER_cert_to_PEM_cert(ca_der))
    with _mapped(f"{host}:{port}", timeout):
        async with asyncio.timeout(timeout):
            _, writer = await asyncio.open_connection(host, port, ssl=ctx, server_hostname=host)
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()


async def https_get_unverified(url: str, *, timeout: float = 3.0, limit: int = 65536) -> bytes:
    """GET a small document over HTTPS without verifying the server (for /ca.crt)."""
    with _mapped(url, timeout):
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url, ssl=_insecure_context()) as resp,
        ):
            if resp.status != 200:
                raise ProbeError(f"{url}: HTTP {resp.status}")
            body = await resp.content.read(limit)
    return body


async def https_status_unverified(url: str, *, timeout: float = 3.0) -> int:
    """The HTTP status of a GET over HTTPS without verifying the server (as keadm asks
    cloudcore whether a node name is taken: InsecureSkipVerify)."""
    with _mapped(url, timeout):
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url, ssl=_insecure_context()) as resp,
        ):
            await resp.content.read(4096)
            return resp.status


async def http_date_offset(url: str, *, timeout: float = 3.0) -> float:
    """Server time minus local time from an HTTP Date header (1 s resolution)."""
    with _mapped(url, timeout):
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            t1 = time.time()
            async with session.get(url) as resp:
                t4 = time.time()
                header = resp.headers.get("Date")
    if not header:
        raise ProbeError(f"{url}: answer has no Date header")
    try:
        server = email.utils.parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError) as exc:
        raise ProbeError(f"{url}: bad Date header {header!r}") from exc
    # Date is truncated to the second: its midpoint is the best estimate.
    return server + 0.5 - (t1 + t4) / 2

"""A connection flood against the cloud API, and what a legitimate client sees meanwhile.

The attacker runs as its own process (`python -m tests.harness.flood`), so its work
never slows the measuring client: N connections spread over source addresses on the
loopback range, each in one of three shapes — `keepalive` (a GET /healthz, then one
every 10 s on the same connection: the attack issue 25 found), `partial` (part of a
request line, then nothing) and `body` (whole headers of a route no throttle answers first, then a body that
never comes) —
opened again as soon as the server closes one, for a bounded time."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
SHAPES = {
    "partial": b"POST /api/v1/enroll HTTP/1.1\r\nHost: x\r\nContent-Le",
    "body": b"POST /api/v1/renew HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n{",
}
EVERY_S = 10.0


async def _one(host: str, port: int, source: str, shape: str, until: float) -> None:
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port, local_addr=(source, 0)), 5
            )
        except (OSError, TimeoutError):
            await asyncio.sleep(0.05)  # the server refused: knock again, as an attacker does
            continue
        try:
            while time.monotonic() < until:
                writer.write(SHAPES.get(shape, REQUEST))
                await writer.drain()
                if shape in SHAPES:
                    # Held until the server cuts it (then at once again) or answers it —
                    # a 429 once the address's enrollment burst is spent: a holder, not a
                    # request flooder (which the server's throttles and a proxy are for),
                    # comes back a second later.
                    if await reader.read(4096):
                        await asyncio.sleep(1.0)
                    break
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                # The cadence of the attack, not a wait for a condition.
                await asyncio.sleep(min(EVERY_S, max(0.0, until - time.monotonic())))
        except (OSError, TimeoutError, asyncio.IncompleteReadError, IndexError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def attack(
    host: str, port: int, sources: list[str], count: int, shape: str, duration_s: float
) -> None:
    until = time.monotonic() + duration_s
    await asyncio.gather(
        *(_one(host, port, sources[i % len(sources)], shape, until) for i in range(count))
    )


def sources(first: str, count: int) -> list[str]:
    """`count` loopback addresses from `first` on (127.x.y.z: all route to lo)."""
    a, b, c, d = (int(x) for x in first.split("."))
    base = (a << 24) | (b << 16) | (c << 8) | d
    return [".".join(str((base + i) >> s & 255) for s in (24, 16, 8, 0)) for i in range(count)]


@contextlib.contextmanager
def flood(
    url: str, *, first_source: str, addresses: int, connections: int, shape: str, duration_s: float
) -> Iterator[None]:
    """The attacker process, for the `with` block (it stops by itself after duration_s)."""
    host, port = url.removeprefix("http://").split(":")
    argv = [
        sys.executable,
        "-m",
        "tests.harness.flood",
        host,
        port,
        first_source,
        str(addresses),
        str(connections),
        shape,
        str(duration_s),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.kill()
        proc.wait(10)


@dataclass
class Tries:
    ok: int
    total: int
    latencies_s: list[float]

    @property
    def p99_s(self) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]

    def __str__(self) -> str:
        return f"{self.ok}/{self.total} within 1 s, p99 {self.p99_s * 1000:.0f} ms"


def tries(count: int, call: Callable[[int], int], expect: int, within_s: float = 1.0) -> Tries:
    """Call `count` times; a try succeeds when it answers `expect` within `within_s`."""
    ok, latencies = 0, []
    for i in range(count):
        start = time.monotonic()
        try:
            status = call(i)
        except (OSError, urllib.error.URLError, TimeoutError):
            status = 0
        took = time.monotonic() - start
        latencies.append(took)
        ok += status == expect and took <= within_s
    return Tries(ok, count, latencies)


def request(
    url: str,
    *,
    data: bytes | None = None,
    token: str | None = None,
    source: str | None = None,
    timeout: float = 5.0,
) -> int:
    """One request on a fresh connection (from `source`, when given); its status."""
    import http.client

    host, port = url.removeprefix("http://").split("/", 1)[0].split(":")
    path = "/" + url.removeprefix("http://").split("/", 1)[1]
    conn = http.client.HTTPConnection(
        host, int(port), timeout=timeout, source_address=(source, 0) if source else None
    )
    headers = {"Content-Type": "application/json"} if data is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request("POST" if data is not None else "GET", path, body=data, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def enroll_body(secret: str, node: str) -> bytes:
    return json.dumps(
        {"node_name": node, "secret": secret, "arch": "arm64", "agent_version": "0.1.0"}
    ).encode()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    for name in ("host", "port", "first_source", "addresses", "connections", "shape", "duration"):
        p.add_argument(name)
    a = p.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(
        attack(
            a.host,
            int(a.port),
            sources(a.first_source, int(a.addresses)),
            int(a.connections),
            a.shape,
            float(a.duration),
        )
    )


if __name__ == "__main__":
    main()

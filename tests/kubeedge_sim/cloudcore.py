"""cloudcore's edge-facing ports on loopback: cloudhub's websocket port (TLS) and the
certificate port (HTTPS: GET /ca.crt serves the CA in DER, as cloudcore v1.13 does)."""

from __future__ import annotations

import asyncio
import ssl
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from tests.harness.procs import free_port
from tests.kubeedge_sim.pki import CloudcorePKI


@dataclass
class CloudcoreSim:
    pki: CloudcorePKI
    host: str = "127.0.0.1"
    websocket_port: int = field(default_factory=free_port)
    cert_port: int = field(default_factory=free_port)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    _ws_server: asyncio.Server | None = None

    @property
    def cloudcore(self) -> str:
        return f"{self.host}:{self.websocket_port}"

    def _ssl(self) -> ssl.SSLContext:
        tmp = Path(tempfile.mkdtemp(prefix="cloudcore-"))
        self.pki.write_server_pem(str(tmp / "server.crt"), str(tmp / "server.key"))
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(tmp / "server.crt", tmp / "server.key")
        return ctx

    async def _ca(self, request: web.Request) -> web.Response:
        return web.Response(body=self.pki.ca_der, content_type="application/octet-stream")

    async def _start(self) -> None:
        ctx = self._ssl()
        app = web.Application()
        app.router.add_get("/ca.crt", self._ca)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.cert_port, ssl_context=ctx).start()

        async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        self._ws_server = await asyncio.start_server(hold, self.host, self.websocket_port, ssl=ctx)

    async def _stop(self) -> None:
        if self._ws_server is not None:
            self._ws_server.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def __enter__(self) -> CloudcoreSim:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="cloudcore", daemon=True
        )
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None
        assert self._thread is not None
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

"""`kedge-cloud-api serve`: startup → serve → graceful shutdown on SIGTERM/SIGINT,
bounded like uvicorn's (open requests get a grace period, then are cut)."""

from __future__ import annotations

import asyncio
import signal
import ssl
from pathlib import Path

import structlog
from aiohttp import web

from agent.host import Host
from agent.names import split_hostport
from agent.sdnotify import notify
from cloud_api.app import create_app
from cloud_api.auth import load_or_create_admin_token
from cloud_api.settings import CloudSettings
from cloud_api.store import Store

log = structlog.get_logger(__name__)
GRACE_S = 10.0


def host_for(settings: CloudSettings, root: Path) -> Host:
    """The host seam; keadm_path's directory leads the search path."""
    base = Host(root)
    if settings.keadm_path is None:
        return base
    return Host(root, search_path=[str(settings.keadm_path.parent), *base.search_path])


async def serve(settings: CloudSettings, root: Path = Path("/")) -> int:
    store = Store(settings.state_dir / "kedge.db")
    token = load_or_create_admin_token(settings.state_dir)
    app = create_app(settings, store, token, host_for(settings, root))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=GRACE_S)
    await runner.setup()
    context = None
    if settings.tls_cert_file and settings.tls_key_file:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file)
    host, port = split_hostport(settings.listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await web.TCPSite(runner, host, port, ssl_context=context).start()
        log.info(
            "serving",
            listen=settings.listen,
            tls=context is not None,
            state_dir=str(settings.state_dir),
        )
        notify("READY=1", f"STATUS=serving on {settings.listen}")
        await stop.wait()
        log.info("stopping")
        notify("STOPPING=1", "STATUS=stopping")
    finally:
        await runner.cleanup()
        store.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0

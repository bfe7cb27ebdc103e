"""`kedge-cloud-api serve`: startup → serve → graceful shutdown on SIGTERM/SIGINT,
bounded like uvicorn's (open requests get a grace period, then are cut)."""

from __future__ import annotations

import asyncio
import gc
import resource
import signal
import ssl
from pathlib import Path

import structlog
from aiohttp import web

from cloud_api.app import create_app
from cloud_api.auth import load_or_create_admin_token
from cloud_api.connections import GuardedSite
from cloud_api.fleet.store import SqliteFleetStore
from cloud_api.routing import GUARD
from cloud_api.settings import CloudSettings
from cloud_api.store import Store
from kedge.errors import ConfigError
from kedge.host import Host
from kedge.names import split_hostport
from kedge.sdnotify import notify

log = structlog.get_logger(__name__)
GRACE_S = 10.0
KEEPALIVE_S = 15.0
# Descriptors beyond the connections: the database, keadm/kubectl pipes, logs.
SPARE_FILES = 128
ACCEPT_BACKLOG = 4096


def ensure_file_limit(max_connections: int) -> None:
    """Raise the soft RLIMIT_NOFILE as far as needed (up to the hard limit), or refuse to
    start: running out of descriptors makes asyncio log every failed accept."""
    need = max_connections + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need or soft == resource.RLIM_INFINITY:
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        raise ConfigError(
            f"max_connections = {max_connections} needs {need} open files, but the limit is "
            f"{hard}: lower max_connections or raise LimitNOFILE= in the unit"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def host_for(settings: CloudSettings, root: Path) -> Host:
    """The host seam; keadm_path's directory leads the search path."""
    base = Host(root)
    if settings.keadm_path is None:
        return base
    return Host(root, search_path=[str(settings.keadm_path.parent), *base.search_path])


async def serve(settings: CloudSettings, root: Path = Path("/")) -> int:
    token = load_or_create_admin_token(settings.state_dir)
    store = Store(settings.state_dir / "kedge.db")
    fleet_store = SqliteFleetStore(settings.state_dir / "fleet.db")
    app = create_app(settings, store, token, host_for(settings, root), fleet_store)
    ensure_file_limit(settings.max_connections)
    runner = web.AppRunner(
        app, access_log=None, shutdown_timeout=GRACE_S, keepalive_timeout=KEEPALIVE_S
    )
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
        # A deep accept queue: with aiohttp's 128, a host knocking with hundreds of
        # connections keeps it full, the kernel drops a newcomer's SYN and the client
        # tries again only a second later. The kernel caps it at net.core.somaxconn.
        await GuardedSite(
            runner, host, port, ssl_context=context, guard=app[GUARD], backlog=ACCEPT_BACKLOG
        ).start()
        log.info(
            "serving",
            listen=settings.listen,
            tls=context is not None,
            state_dir=str(settings.state_dir),
        )
        notify("READY=1", f"STATUS=serving on {settings.listen}")
        # What start-up made (modules, the app: some 50,000 objects) lives as long as the
        # process: out of the collector's sight, a full collection no longer walks it.
        # Those walks took 50-65 ms each, and under a steady stream of GET /api/v1/nodes
        # one came every second or so, stalling whatever request was running.
        gc.freeze()
        await stop.wait()
        log.info("stopping")
        notify("STOPPING=1", "STATUS=stopping")
    finally:
        await runner.cleanup()
        store.close()
        fleet_store.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0

"""kedge-cloud-api serve: run the service (the systemd unit runs this)."""

from __future__ import annotations

import argparse
from pathlib import Path

from cloud_api.settings import CloudSettings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             common: argparse.ArgumentParser, client: argparse.ArgumentParser) -> None:  # fmt: skip
    p = sub.add_parser("serve", parents=[common], help="run the API service",
                       description="Run the HTTP API (the systemd unit runs this).")  # fmt: skip
    p.add_argument(
        "--listen", metavar="HOST:PORT", help="address to listen on (default 127.0.0.1:8080)"
    )
    p.add_argument("--state-dir", type=Path, metavar="DIR", help="database and admin token")
    p.add_argument("--root", type=Path, default=Path("/"), help=argparse.SUPPRESS)
    p.set_defaults(handler=run, overrides=lambda a: {"listen": a.listen, "state_dir": a.state_dir})


async def run(args: argparse.Namespace, settings: CloudSettings) -> int:
    from cloud_api.server import serve  # the service's imports only when serving

    return await serve(settings, args.root)

"""kedge-cloud-api's command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

from agent.errors import UserError
from agent.logs import configure_logging
from cloud_api import __version__
from cloud_api.settings import DEFAULT_CONFIG, load_cloud_settings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kedge-cloud-api",
        description="Drive cloudcore setup on the master, enroll edge boards, serve the fleet view.",
    )
    parser.add_argument("--version", action="version", version=f"kedge-cloud-api {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    serve = sub.add_parser("serve", help="run the API service",
                           description="Run the HTTP API (the systemd unit runs this).")  # fmt: skip
    serve.add_argument("--config", type=Path, metavar="FILE",
                       help=f"settings file (default {DEFAULT_CONFIG}, or $KEDGE_CLOUD_CONFIG)")  # fmt: skip
    serve.add_argument(
        "--listen", metavar="HOST:PORT", help="address to listen on (default 127.0.0.1:8080)"
    )
    serve.add_argument("--state-dir", type=Path, metavar="DIR", help="database and admin token")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_cloud_settings(
            args.config, {"listen": args.listen, "state_dir": args.state_dir}
        )
        configure_logging(settings.log_level)
        from cloud_api.server import serve

        return asyncio.run(serve(settings))
    except UserError as exc:
        print(f"kedge-cloud-api: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"kedge-cloud-api: error: {exc.strerror or exc}", file=sys.stderr)
        return 1

"""kedge-cloud-api's command line: `serve` runs the service; the other verbs drive a
running one (on this master they find its address and admin token by themselves).
One module per verb group, as in the agent's CLI; answers are read into the API's models."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from cloud_api import __version__
from cloud_api.cli import boards, broker, cloudcore, fleet, secret, seed, serve
from cloud_api.cli.common import EXIT_FAILED, EXIT_USAGE, client_parser, common_parser
from cloud_api.settings import load_cloud_settings
from kedge.cloud_client import ApiAnswerError, ClientError
from kedge.errors import UserError
from kedge.logs import configure_logging

EPILOG = """The whole cloud setup on the master:
  kedge-cloud-api init --advertise-address 192.168.1.10   # keadm init with the fixes; waits until ready
  kedge-cloud-api broker init --board-host 192.168.1.10 --restart   # mosquitto: TLS, one identity per board
  kedge-cloud-api secret create --uses 4 --ttl 24h       # give the secret to the boards
then on each board: kedge-agent enroll --cloud-api http://192.168.1.10:8080 --secret SECRET && kedge-agent join
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kedge-cloud-api", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Drive cloudcore setup on the master, enroll edge boards, serve the fleet view.",
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"kedge-cloud-api {__version__}")
    common = common_parser()
    client = client_parser(common)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (serve, cloudcore, broker, boards, fleet, secret, seed):
        module.register(sub, common, client)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides = args.overrides(args) if hasattr(args, "overrides") else {}
        settings = load_cloud_settings(args.config, overrides)
        configure_logging(settings.log_level)
        code: int = asyncio.run(args.handler(args, settings))
    except ApiAnswerError as exc:
        print(f"kedge-cloud-api: error: {exc.message}", file=sys.stderr)
        for key, value in exc.details.items():
            print(f"  {key}: {value}", file=sys.stderr)
        return EXIT_USAGE if exc.status in (400, 401, 403, 404, 422) else EXIT_FAILED
    except ClientError as exc:
        print(f"kedge-cloud-api: error: {exc} (is the service running? systemctl status kedge-cloud-api)",
              file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    except UserError as exc:
        print(f"kedge-cloud-api: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"kedge-cloud-api: error: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILED
    return code

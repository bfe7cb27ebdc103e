"""kedge-agent's command line: parse, dispatch, and turn user errors into exit 2."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

from agent import __version__
from agent.commands import check, enroll, firstboot, fix, join, reset, run, seed, upgrade
from agent.commands.common import EXIT_FAILED, EXIT_USAGE, common_parser
from agent.state import Busy
from kedge.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kedge-agent",
        description="Get an edge board into a KubeEdge cluster, and keep it healthy.",
        epilog="Start with `kedge-agent check`; `kedge-agent COMMAND --help` explains each command.",
    )
    parser.add_argument("--version", action="version", version=f"kedge-agent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = common_parser()
    for module in (check, enroll, fix, join, reset, upgrade, seed, firstboot, run):
        module.register(sub, common)
    return parser


async def _main(args: argparse.Namespace) -> int:
    # SIGTERM cancels the command like Ctrl-C does, so children are reaped and the
    # join record says "interrupted" instead of the process vanishing mid-step.
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    if task is not None:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        code: int = await args.handler(args)
        return code
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(_main(args))
    except UserError as exc:
        print(f"kedge-agent: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Busy as exc:
        print(f"kedge-agent: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("kedge-agent: interrupted", file=sys.stderr)
        return 130

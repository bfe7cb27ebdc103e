"""kedge-agent's command line. Parses, loads settings, dispatches; errors become exit 2."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent import __version__
from agent.checks import CHECKS
from agent.errors import UserError
from agent.host import Host
from agent.logs import configure_logging
from agent.preflight import run_preflight
from agent.render import render_list, render_report, use_colour
from agent.report import Status
from agent.settings import DEFAULT_CONFIG, AgentSettings, load_settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

CHECK_EPILOG = """\
exit status: 0 nothing failed, 1 a check failed or errored (or warned, with
--warnings-as-errors), 2 bad usage or configuration.

examples:
  kedge-agent check                          full preflight of this board
  kedge-agent check --only docker,images     just those (and what they need)
  kedge-agent check --ignore conflicts       report conflicts as a warning
  kedge-agent check --json | jq .checks      machine-readable report
  kedge-agent check --root /mnt/board        check a mounted board image
"""


def _id_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"settings file (default {DEFAULT_CONFIG}, or $KEDGE_AGENT_CONFIG)",
    )
    common.add_argument(
        "--root",
        type=Path,
        metavar="DIR",
        default=Path("/"),
        help="board filesystem root: a mounted image or fixture (default /)",
    )
    common.add_argument("--json", action="store_true", help="print one JSON document")
    common.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more to stderr (-vv: debug)"
    )

    parser = argparse.ArgumentParser(
        prog="kedge-agent",
        description="Get an edge board into a KubeEdge cluster, and keep it healthy.",
    )
    parser.add_argument("--version", action="version", version=f"kedge-agent {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    chk = sub.add_parser(
        "check",
        parents=[common],
        help="check that this board can join KubeEdge (changes nothing)",
        description="Run every preflight check that catches a failing `keadm join` early. "
        "Nothing on the board is changed.",
        epilog=CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    chk.add_argument("--list", action="store_true", help="list check ids and what they test")
    chk.add_argument(
        "--only",
        type=_id_list,
        action="extend",
        default=[],
        metavar="ID,…",
        help="run only these checks (and the checks they need)",
    )
    chk.add_argument(
        "--skip",
        type=_id_list,
        action="extend",
        default=[],
        metavar="ID,…",
        help="do not run these checks",
    )
    chk.add_argument(
        "--ignore",
        type=_id_list,
        action="extend",
        default=[],
        metavar="ID,…",
        help="run these checks but report a failure as a warning",
    )
    chk.add_argument(
        "--warnings-as-errors", action="store_true", help="exit 1 when any check warns"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_dispatch(args))
    except UserError as exc:
        print(f"kedge-agent: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _settings(args: argparse.Namespace, overrides: dict[str, Any] | None = None) -> AgentSettings:
    settings = load_settings(args.config, overrides)
    level = (
        ["warning", "info", "debug"][min(args.verbose, 2)] if args.verbose else settings.log_level
    )
    configure_logging(level)
    return settings


def _host(args: argparse.Namespace) -> Host:
    root: Path = args.root
    if not root.is_dir():
        raise UserError(f"--root {root}: not a directory")
    return Host(root)


async def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "check":
        return await _check(args)
    raise UserError(f"unknown command {args.command}")  # pragma: no cover - argparse guards


async def _check(args: argparse.Namespace) -> int:
    known = set(CHECKS)
    for flag in ("only", "skip", "ignore"):
        unknown = [i for i in getattr(args, flag) if i not in known]
        if unknown:
            raise UserError(
                f"--{flag}: unknown check id {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(CHECKS)}; see kedge-agent check --list)"
            )
    if args.list:
        sys.stdout.write(render_list(list(CHECKS.values())))
        return EXIT_OK
    settings = _settings(args)
    report = await run_preflight(
        settings, _host(args), only=args.only, skip=args.skip, ignore=args.ignore
    )
    if args.json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        sys.stdout.write(render_report(report, colour=use_colour(sys.stdout)))
    if not report.ok:
        return EXIT_FAILED
    if args.warnings_as_errors and any(c.status is Status.WARN for c in report.checks):
        return EXIT_FAILED
    return EXIT_OK

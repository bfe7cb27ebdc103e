"""kedge-agent check."""

from __future__ import annotations

import argparse
import sys

from agent.checks import CHECKS
from agent.commands.common import EXIT_FAILED, EXIT_OK, check_ids, host_from, id_list, settings_from
from agent.preflight import run_preflight
from agent.render import render_list, render_report, use_colour
from kedge.wire import Status

EPILOG = """\
exit status: 0 nothing failed, 1 a check failed or errored (or warned, with
--warnings-as-errors), 2 bad usage or configuration.

examples:
  kedge-agent check                          full preflight of this board
  kedge-agent check --only docker,images     just those (and what they need)
  kedge-agent check --ignore conflicts       report conflicts as a warning
  kedge-agent check --json | jq .checks      machine-readable report
  kedge-agent check --root /mnt/board        check a mounted board image
"""


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "check", parents=[common],
        help="check that this board can join KubeEdge (changes nothing)",
        description="Run every preflight check that catches a failing `keadm join` early. "
        "Nothing on the board is changed.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--list", action="store_true", help="list check ids and what they test")
    p.add_argument("--only", type=id_list, action="extend", default=[], metavar="ID,…",
                   help="run only these checks (and the checks they need)")  # fmt: skip
    p.add_argument(
        "--skip",
        type=id_list,
        action="extend",
        default=[],
        metavar="ID,…",
        help="do not run these checks",
    )
    p.add_argument("--ignore", type=id_list, action="extend", default=[], metavar="ID,…",
                   help="run these checks but report a failure as a warning")  # fmt: skip
    p.add_argument("--warnings-as-errors", action="store_true", help="exit 1 when any check warns")
    p.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    for flag in ("only", "skip", "ignore"):
        check_ids(flag, getattr(args, flag), list(CHECKS))
    if args.list:
        sys.stdout.write(render_list(list(CHECKS.values())))
        return EXIT_OK
    settings = settings_from(args)
    report = (
        await run_preflight(
            settings, host_from(args), only=args.only, skip=args.skip, ignore=args.ignore
        )
    ).report
    if args.json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        sys.stdout.write(render_report(report, colour=use_colour(sys.stdout)))
    if not report.ok:
        return EXIT_FAILED
    if args.warnings_as_errors and any(c.status is Status.WARN for c in report.checks):
        return EXIT_FAILED
    return EXIT_OK

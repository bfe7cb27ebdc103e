"""kedge-cloud-api token and boards: what boards need to join, and who enrolled."""

from __future__ import annotations

import argparse
import sys

from cloud_api.cli.common import EXIT_OK, connect, dump, print_json, when
from cloud_api.models import BoardInfo, PendingInfo, TokenView
from cloud_api.settings import CloudSettings
from kedge.errors import UserError
from kedge.names import is_dns1123_subdomain


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             common: argparse.ArgumentParser, client: argparse.ArgumentParser) -> None:  # fmt: skip
    token = sub.add_parser("token", parents=[client],
                           help="print the current join token (a secret) to stdout")  # fmt: skip
    token.set_defaults(handler=run_token)
    boards = sub.add_parser("boards", parents=[client],
                            help="list enrolled boards and whether they joined; approve waiting ones")  # fmt: skip
    boards.set_defaults(handler=run_boards)
    verbs = boards.add_subparsers(dest="boards_command", metavar="COMMAND")
    verbs.add_parser("list", parents=[client], help="enrolled boards (the default)").set_defaults(
        handler=run_boards
    )
    verbs.add_parser("pending", parents=[client], help="boards waiting for approval to enroll"
                     ).set_defaults(handler=run_pending)  # fmt: skip
    approve = verbs.add_parser("approve", parents=[client], help="let a waiting board enroll",
                               description="The board enrolls the next time it asks (within a minute).")  # fmt: skip
    approve.add_argument("name", help="the node name (kedge-cloud-api boards pending)")
    approve.set_defaults(handler=run_decide)
    refuse = verbs.add_parser(
        "refuse",
        parents=[client],
        help="refuse a waiting board",
        description="The board is told it was refused when it asks again, until its entry "
        "expires (pending_days); approve undoes it.",
    )
    refuse.add_argument("name", help="the node name (kedge-cloud-api boards pending)")
    refuse.set_defaults(handler=run_decide)


async def run_token(args: argparse.Namespace, settings: CloudSettings) -> int:
    async with connect(args, settings) as api:
        view = await api.fetch("GET", "/api/v1/cloudcore/token", TokenView)
    if args.json:
        print_json(view.model_dump_json(indent=2))
    else:
        print(view.token)
        print(f"expires {when(view.expires_at)}", file=sys.stderr)
    return EXIT_OK


async def run_boards(args: argparse.Namespace, settings: CloudSettings) -> int:
    async with connect(args, settings) as api:
        boards = await api.fetch_list("/api/v1/boards", BoardInfo)
    if args.json:
        print_json(dump([b.model_dump(mode="json") for b in boards]))
        return EXIT_OK
    for b in boards:
        again = (
            f" (enrolled {b.enrollments} times, first {when(b.first_enrolled)})"
            if b.enrollments > 1
            else ""
        )
        print(f"{b.node_name:30} {b.arch:6} agent {b.agent_version:10} enrolled {when(b.enrolled_at)}  "
              f"{'joined' if b.joined else 'not joined'}{again}")  # fmt: skip
    return EXIT_OK


async def run_pending(args: argparse.Namespace, settings: CloudSettings) -> int:
    async with connect(args, settings) as api:
        waiting = await api.fetch_list("/api/v1/boards/pending", PendingInfo)
    if args.json:
        print_json(dump([w.model_dump(mode="json") for w in waiting]))
        return EXIT_OK
    if not waiting:
        print("no board waits for approval")
    for w in waiting:
        state = (
            "refused"
            if w.refused
            else "approved, enrolls at its next try"
            if w.approved
            else w.reason
        )
        print(f"{w.node_name:30} serial {w.serial or '-':20} since {when(w.requested_at)}  {state}")
    return EXIT_OK


SAID = {
    "approve": "approved {name} (serial {serial}): it enrolls the next time it asks",
    "refuse": "refused {name} (serial {serial}): asking again, it is told so",
}


async def run_decide(args: argparse.Namespace, settings: CloudSettings) -> int:
    """boards approve NAME / boards refuse NAME."""
    if not is_dns1123_subdomain(args.name):
        raise UserError(f"{args.name!r} is not a node name (a DNS-1123 subdomain)")
    verdict = args.boards_command
    async with connect(args, settings) as api:
        decided = await api.fetch("POST", f"/api/v1/boards/{args.name}/{verdict}", PendingInfo)
    if args.json:
        print_json(decided.model_dump_json(indent=2))
    else:
        print(SAID[verdict].format(name=decided.node_name, serial=decided.serial or "-"))
    return EXIT_OK

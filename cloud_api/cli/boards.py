"""kedge-cloud-api token and boards: what boards need to join, and who enrolled."""

from __future__ import annotations

import argparse
import sys

from cloud_api.cli.common import EXIT_OK, connect, dump, print_json, when
from cloud_api.models import BoardInfo, TokenView
from cloud_api.settings import CloudSettings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             common: argparse.ArgumentParser, client: argparse.ArgumentParser) -> None:  # fmt: skip
    token = sub.add_parser("token", parents=[client],
                           help="print the current join token (a secret) to stdout")  # fmt: skip
    token.set_defaults(handler=run_token)
    boards = sub.add_parser("boards", parents=[client],
                            help="list enrolled boards and whether they joined")  # fmt: skip
    boards.set_defaults(handler=run_boards)


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
        print(f"{b.node_name:30} {b.arch:6} agent {b.agent_version:10} enrolled {when(b.enrolled_at)}  "
              f"{'joined' if b.joined else 'not joined'}")  # fmt: skip
    return EXIT_OK

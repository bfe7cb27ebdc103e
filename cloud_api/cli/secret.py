"""kedge-cloud-api secret create|list|revoke: enrollment secrets for boards."""

from __future__ import annotations

import argparse
import re
import sys

from cloud_api.cli.common import EXIT_OK, connect, dump, print_json, service_url, when
from cloud_api.models import Revoked, SecretCreated, SecretInfo, SecretRequest
from cloud_api.settings import CloudSettings
from kedge.errors import UserError

PATH = "/api/v1/enrollment-secrets"
DURATION_RE = re.compile(r"(\d+)([smhd])")
SECRET_ID_RE = re.compile(r"[0-9a-f]{1,64}")


def duration(value: str) -> float:
    m = DURATION_RE.fullmatch(value.strip())
    if not m:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected a number and a unit, like 90s, 30m, 24h or 7d"
        )
    return int(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             common: argparse.ArgumentParser, client: argparse.ArgumentParser) -> None:  # fmt: skip
    verbs = sub.add_parser("secret", help="enrollment secrets").add_subparsers(
        dest="secret_command", metavar="COMMAND", required=True
    )
    create = verbs.add_parser("create", parents=[client], help="create an enrollment secret for boards",
                              description="The secret is printed once; only its hash is stored.")  # fmt: skip
    create.add_argument("--ttl", type=duration, metavar="DURATION",
                        help="expires after this (90s, 30m, 24h, 7d)")  # fmt: skip
    create.add_argument("--uses", type=int, metavar="N", help="how many boards may enroll with it")
    create.add_argument("--note", default="", help="what it is for (shown in the list)")
    create.set_defaults(handler=run_create)
    listing = verbs.add_parser(
        "list", parents=[client], help="list enrollment secrets (never the secrets)"
    )
    listing.set_defaults(handler=run_list)
    revoke = verbs.add_parser("revoke", parents=[client], help="revoke an enrollment secret by its id",
                              description="Boards can no longer enroll with it; enrolled boards stay.")  # fmt: skip
    revoke.add_argument("id", help="the secret's id (from secret create or secret list)")
    revoke.set_defaults(handler=run_revoke)


async def run_create(args: argparse.Namespace, settings: CloudSettings) -> int:
    body = SecretRequest(ttl_s=args.ttl, uses=args.uses, note=args.note)
    async with connect(args, settings) as api:
        created = await api.fetch("POST", PATH, SecretCreated, body)
    if args.json:
        print_json(created.model_dump_json(indent=2))
        return EXIT_OK
    print(created.secret)
    print(f"id {created.id}, expires {when(created.expires_at)}, uses {created.uses_left or 'unlimited'}; "
          f"on each board: kedge-agent enroll --cloud-api {service_url(args, settings)} --secret <this secret>",
          file=sys.stderr)  # fmt: skip
    return EXIT_OK


async def run_list(args: argparse.Namespace, settings: CloudSettings) -> int:
    async with connect(args, settings) as api:
        secrets = await api.fetch_list(PATH, SecretInfo)
    if args.json:
        print_json(dump([s.model_dump(mode="json") for s in secrets]))
        return EXIT_OK
    for s in secrets:
        print(
            f"{s.id}  expires {when(s.expires_at)}  uses left {s.uses_left or 'unlimited'}  {s.note}"
        )
    return EXIT_OK


async def run_revoke(args: argparse.Namespace, settings: CloudSettings) -> int:
    if not SECRET_ID_RE.fullmatch(args.id):
        raise UserError(f"secret id {args.id!r}: expected the hex id that secret list shows")
    async with connect(args, settings) as api:
        revoked = await api.fetch("DELETE", f"{PATH}/{args.id}", Revoked)
    if args.json:
        print_json(revoked.model_dump_json(indent=2))
    else:
        print(f"revoked {revoked.revoked}")
    return EXIT_OK

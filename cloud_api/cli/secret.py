"""kedge-cloud-api secret create|list|revoke: enrollment secrets for boards."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from cloud_api.cli.common import EXIT_OK, connect, dump, print_json, service_url, when
from cloud_api.models import Revoked, SecretCreated, SecretInfo, SecretRequest
from cloud_api.settings import CloudSettings
from kedge.errors import UserError
from kedge.seed import reduced

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


def add_policy_args(p: argparse.ArgumentParser) -> None:
    """Who may enroll with the secret (docs/firstboot.md, "Enrollment policies")."""
    p.add_argument("--serial", action="append", metavar="SERIAL", dest="serials",
                   help="allow boards with this serial (repeatable; others wait for approval)")  # fmt: skip
    p.add_argument("--serials-file", type=Path, metavar="FILE",
                   help="allow the serials in FILE, one per line")  # fmt: skip
    p.add_argument("--name-pattern", metavar="GLOB",
                   help="refuse node names that do not match (fnmatch, e.g. 'rk3000-*')")  # fmt: skip
    p.add_argument("--approval", choices=("auto", "pending"), default="auto",
                   help="pending: every board waits for kedge-cloud-api boards approve NAME")  # fmt: skip
    p.add_argument("--reflash", choices=("reissue", "pending"), default="reissue",
                   help="a re-flashed board (same serial or MAC as an enrolled one): new credentials "
                   "under its name and history (reissue, the default), or wait for approval")  # fmt: skip


def policy_fields(args: argparse.Namespace) -> dict[str, Any]:
    serials: list[str] | None = None
    if args.serials or args.serials_file:
        raw = list(args.serials or [])
        if args.serials_file:
            try:
                raw += args.serials_file.read_text().split()
            except OSError as exc:
                raise UserError(f"--serials-file {args.serials_file}: {exc.strerror}") from exc
        serials = [reduced(s) for s in raw]
        short = [r for r, s in zip(raw, serials, strict=True) if not 4 <= len(s) <= 64]
        if short:
            raise UserError(f"serial {short[0]!r}: expected 4 to 64 letters and digits")
    return {"serials": serials, "name_pattern": args.name_pattern, "approval": args.approval,
            "reflash": args.reflash}  # fmt: skip


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
    add_policy_args(create)
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
    body = SecretRequest(ttl_s=args.ttl, uses=args.uses, note=args.note, **policy_fields(args))
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
        print(f"{s.id}  expires {when(s.expires_at)}  uses left "
              f"{'unlimited' if s.uses_left is None else s.uses_left}  {s.note}")  # fmt: skip
        rules = [f"serials: {len(s.serials)} allowed" if s.serials is not None else "",
                 f"names: {s.name_pattern}" if s.name_pattern else "",
                 "approval: pending" if s.approval == "pending" else "",
                 "re-flash: pending" if s.reflash == "pending" else ""]  # fmt: skip
        if any(rules):
            print("  policy: " + "; ".join(r for r in rules if r))
        if s.boards:
            print(f"  enrolled {len(s.boards)}: {', '.join(s.boards)}")
        if s.pending:
            print(f"  waiting for approval: {', '.join(s.pending)}")
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

"""kedge-cloud-api seed create: a first-boot seed for a batch of boards (docs/firstboot.md)."""

from __future__ import annotations

import argparse
import hashlib
import ssl
import sys
from pathlib import Path

from pydantic import SecretStr, ValidationError

from cloud_api.cli.common import EXIT_OK, connect, service_url, when
from cloud_api.cli.secret import PATH, add_policy_args, duration, policy_fields
from cloud_api.models import SecretCreated, SecretRequest
from cloud_api.settings import CloudSettings
from kedge import seed
from kedge.errors import UserError, first_problem
from kedge.private_files import write_private
from kedge.wire.commands import MUTATING_ACTIONS

EPILOG = """\
The seed holds the cloud API's URL as the boards reach it, how to trust it (the SHA-256
of its certificate, from tls_cert_file, when it serves https) and a new enrollment
secret limited by --uses and --ttl — never a KubeEdge token or a broker password: each
board gets those at enrollment, current at that moment. Write it to the boot partition
of the image (kedge-agent seed --write /mnt/boot --from FILE); the board reads it once
and scrubs it there. `kedge-cloud-api secret list` shows the uses left.
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             common: argparse.ArgumentParser, client: argparse.ArgumentParser) -> None:  # fmt: skip
    verbs = sub.add_parser("seed", help="first-boot seeds for flashing boards").add_subparsers(
        dest="seed_command", metavar="COMMAND", required=True
    )
    create = verbs.add_parser(
        "create", parents=[client], help="make a seed file (and its enrollment secret) for a batch",
        description="Create an enrollment secret for a batch of boards and write the seed file.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    create.add_argument("--uses", type=int, required=True, metavar="N",
                        help="how many boards may enroll with it (the batch size)")  # fmt: skip
    create.add_argument("--ttl", type=duration, default=14 * 86400.0, metavar="DURATION",
                        help="the secret expires after this (default 14d: flash, ship, power on)")  # fmt: skip
    create.add_argument("--cloud-api", metavar="URL",
                        help="the URL boards reach the API at (default: this service's)")  # fmt: skip
    create.add_argument("--node-name", default="{hostname}", metavar="PATTERN",
                        help="node names, from {serial}, {mac}, {hostname} (e.g. rk3000-{serial})")  # fmt: skip
    create.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                        help="a node label for every board (repeatable)")  # fmt: skip
    create.add_argument("--allow-remote", action="append", default=[], metavar="ACTION",
                        choices=MUTATING_ACTIONS,
                        help="a remote command the boards accept (repeatable)")  # fmt: skip
    create.add_argument("--out", type=Path, default=Path(seed.SEED_NAME), metavar="FILE",
                        help=f"where to write it (default ./{seed.SEED_NAME}; never overwritten)")  # fmt: skip
    create.add_argument("--note", default="", help="what the batch is (shown in secret list)")
    add_policy_args(create)
    create.set_defaults(handler=run_create)


def fingerprint(cert_file: Path) -> str:
    """SHA-256 of the certificate's DER, as the board's pin compares it."""
    try:
        pem = cert_file.read_text()
    except OSError as exc:
        raise UserError(f"tls_cert_file {cert_file}: cannot read: {exc.strerror}") from exc
    try:
        der = ssl.PEM_cert_to_DER_cert(
            pem.split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
        )
    except ValueError as exc:
        raise UserError(f"tls_cert_file {cert_file}: not a PEM certificate") from exc
    return hashlib.sha256(der).hexdigest()


async def run_create(args: argparse.Namespace, settings: CloudSettings) -> int:
    if args.uses < 1:
        raise UserError(f"--uses {args.uses}: a batch has at least one board")
    if args.out.exists():
        raise UserError(f"{args.out} exists: a seed holds a live secret, so kedge never overwrites one "
                        "(remove it, or pass another --out)")  # fmt: skip
    url = args.cloud_api or service_url(args, settings)
    pin = fingerprint(settings.tls_cert_file) if settings.tls_cert_file else None
    labels = {}
    for item in args.label:
        key, eq, value = item.partition("=")
        if not eq:
            raise UserError(f"--label {item!r}: expected KEY=VALUE")
        labels[key] = value
    try:  # every check the board will make, before a secret is spent on a bad seed
        seed.Seed(cloud_api=url, ca_sha256=pin, secret=SecretStr("probe"), node_name=args.node_name,
                  labels=labels, allow_remote=args.allow_remote)  # fmt: skip
    except ValidationError as exc:
        raise UserError(
            f"the seed would be refused by the boards: {first_problem(exc, 'seed')}"
        ) from None
    body = SecretRequest(ttl_s=args.ttl, uses=args.uses, note=args.note or f"seed {args.out.name}",
                         **policy_fields(args))  # fmt: skip
    async with connect(args, settings) as api:
        created = await api.fetch("POST", PATH, SecretCreated, body)
    made = seed.Seed(cloud_api=url, ca_sha256=pin, secret=SecretStr(created.secret),
                     node_name=args.node_name, labels=labels, allow_remote=args.allow_remote)  # fmt: skip
    write_private(args.out, seed.dumps(made))
    print(f"wrote {args.out} (0600: it holds the secret)")
    print(f"secret {created.id}: {args.uses} uses, expires {when(created.expires_at)}; boards reach "
          f"{url}" + (f", pinned to sha256 {pin[:16]}…" if pin else ""), file=sys.stderr)  # fmt: skip
    return EXIT_OK

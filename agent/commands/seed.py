"""kedge-agent seed: put a first-boot seed onto a mounted boot partition or image."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.commands.common import EXIT_OK
from kedge import seed
from kedge.errors import ConfigError, UserError
from kedge.private_files import write_private

EPILOG = f"""\
The seed comes from `kedge-cloud-api seed create` on the master. It is checked here as
the board will check it (URL, the pin or CA, the secret's shape, the node-name pattern,
labels) before anything is written, then written as DIR/{seed.SEED_NAME}. Mount the
image's boot partition at DIR first; the board looks at {" and ".join(seed.SEED_PATHS)}.
A seed already there is replaced only with --replace (a corrected seed is picked up at
the next boot).
"""


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "seed", help="write a first-boot seed onto a mounted boot partition",
        description="Check a first-boot seed and write it onto a boot partition.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--write", type=Path, required=True, metavar="DIR",
                   help="the mounted boot partition (e.g. /mnt/boot)")  # fmt: skip
    p.add_argument("--from", dest="source", type=Path, required=True, metavar="FILE",
                   help="the seed kedge-cloud-api seed create wrote")  # fmt: skip
    p.add_argument("--replace", action="store_true", help="replace a seed already there")
    p.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    try:
        text = args.source.read_text()
    except OSError as exc:
        raise UserError(f"{args.source}: cannot read: {exc.strerror}") from exc
    try:
        found = seed.parse(text, str(args.source))
    except ConfigError as exc:
        raise UserError(str(exc)) from None
    if not args.write.is_dir():
        raise UserError(
            f"--write {args.write}: not a directory (mount the boot partition there first)"
        )
    if found.images_archive and not (args.write / found.images_archive).is_file():
        raise UserError(f"{args.source}: images_archive = {found.images_archive!r}, but "
                        f"{args.write / found.images_archive} does not exist: copy it there first")  # fmt: skip
    target = args.write / seed.SEED_NAME
    if target.exists() and not args.replace:
        raise UserError(f"{target} exists: pass --replace to put this seed in its place")
    write_private(target, seed.dumps(found))
    print(f"wrote {target}: boards enroll with {found.cloud_api} as {found.node_name!r}")
    return EXIT_OK

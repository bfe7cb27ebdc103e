"""kedge-agent fix."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from agent.commands.common import (
    EXIT_FAILED,
    check_ids,
    emitter,
    finish,
    host_from,
    id_list,
    settings_from,
)
from agent.fix import FIXABLE, run_fix
from agent.state import StateDir
from kedge.confirm import confirm
from kedge.errors import UserError

EPILOG = f"""\
repairs (by check id): {", ".join(FIXABLE)}
  cgroup-driver  merge native.cgroupdriver into /etc/docker/daemon.json (backup kept),
                 restart docker, wait for it
  clock          step the clock (chronyc makestep, timedatectl set-ntp, ntpdate)
  images         pull missing images (retries, registry_mirrors in order), or load
                 them from --from-archive FILE (a `docker save` tarball)
  leftovers      the full `kedge-agent reset`
  conflicts      stop and disable k3s/kubelet units, only with --force-remove-conflicts
  cri            enable containerd's CRI plugin (disabled_plugins), restart it
  runtime-cgroup set runc's SystemdCgroup in /etc/containerd/config.toml to the join's
                 cgroup driver (backup kept, other lines untouched), restart, ask again
  sandbox-image, runtime-images
                 pull through the runtime's CRI (its registry mirrors apply)
  cni            install the CNI plugins from --cni-archive FILE (a release tarball
                 of containernetworking/plugins for this board's architecture) and
                 write a bridge config when there is none

Each change is printed before it is made; --dry-run prints only. Without --yes,
fix asks on a terminal and refuses without one.
"""


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "fix", parents=[common], help="repair what the checks found",
        description="Run the checks, repair what kedge can repair safely, and check again.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument(
        "--only",
        type=id_list,
        action="extend",
        default=[],
        metavar="ID,…",
        help="repair only these",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before changing the board")
    p.add_argument(
        "--from-archive", type=Path, metavar="FILE", help="load images from a `docker save` tarball"
    )
    p.add_argument("--cni-archive", type=Path, metavar="FILE",
                   help="CNI plugins to install (cni-plugins-linux-ARCH-vX.tgz)")  # fmt: skip
    p.add_argument("--force-remove-conflicts", action="store_true",
                   help="stop and disable k3s/kubelet units (their data is kept)")  # fmt: skip
    p.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    check_ids("only", args.only, list(FIXABLE))
    for flag, path in (("--from-archive", args.from_archive), ("--cni-archive", args.cni_archive)):
        if path is not None and not path.is_file():
            raise UserError(f"{flag} {path}: no such file")
    settings = settings_from(args)
    host = host_from(args)
    emit = emitter(args)
    if not args.dry_run and not confirm(
        "Change this board to fix what the checks find?", yes=args.yes, command="fix"
    ):
        emit("nothing changed")
        return EXIT_FAILED
    with contextlib.ExitStack() as stack:
        if not args.dry_run:
            stack.enter_context(StateDir(host, settings.state_dir).lock("fix"))
        report = await run_fix(
            settings, host, only=args.only, dry_run=args.dry_run, emit=emit,
            from_archive=args.from_archive, force_remove_conflicts=args.force_remove_conflicts,
            cni_archive=args.cni_archive,
        )  # fmt: skip
    if not args.json:
        for p in report.details["problems"]:
            emit(f"{p['check']}: {p['problem']}\n  remedy: {p['remedy']}")
    return finish(args, report)

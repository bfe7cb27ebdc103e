"""kedge-agent reset."""

from __future__ import annotations

import argparse

from agent.commands.common import EXIT_FAILED, emitter, finish, host_from, settings_from
from agent.docker_api import DockerClient
from agent.reset import KUBEEDGE_DIRS, kept, reset_board
from agent.state import StateDir
from kedge.confirm import confirm
from kedge.wire import ActionReport

EPILOG = f"""\
In order, skipping what is not there: stop and disable edgecore.service and remove
it; remove the KubeEdge containers (mqtt, k8s_*) through the Docker API, and on a
CRI board every pod sandbox through the CRI; unmount what pods left mounted below
the directories (never forced); delete
{", ".join(KUBEEDGE_DIRS)},
and from KubeEdge v1.20 edgecore's data directory /var/lib/kubelet. A directory
with something still mounted below it is kept untouched and reset fails, naming it.
Asks first on a terminal; without a terminal it needs --yes. kedge never runs
`keadm reset`: on a board holding a kubeconfig it tears down cloudcore instead.
"""


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "reset", parents=[common], help="remove everything a join left on this board",
        description="Undo a KubeEdge join on this board, tolerating missing pieces.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--yes", "-y", action="store_true", help="do not ask first")
    p.add_argument(
        "--dry-run", action="store_true", help="print what would be removed, remove nothing"
    )
    p.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    host = host_from(args)
    emit = emitter(args)
    if not args.dry_run and not confirm(
        "Remove edgecore and all KubeEdge state from this board?", yes=args.yes, command="reset"
    ):
        emit("nothing changed")
        return EXIT_FAILED
    state = StateDir(host, settings.state_dir)
    async with DockerClient(settings.docker_socket) as docker:
        if args.dry_run:
            changes = await reset_board(host, docker, settings, dry_run=True)
        else:
            with state.lock("reset"):
                changes = await reset_board(host, docker, settings)
                if not kept(changes):
                    state.clear_join()
    for c in changes:
        emit(
            f"{'would ' if args.dry_run else ''}{c.action} {c.target}{f' ({c.detail})' if c.detail else ''}"
        )
    verb = "would remove" if args.dry_run else "removed"
    summary = (
        f"{verb} {len(changes)} items"
        if changes
        else "nothing to reset: no trace of KubeEdge on this board"
    )
    refused = kept(changes)
    if refused:
        summary = "reset stopped short: kept " + "; kept ".join(
            f"{c.target}: {c.detail}" for c in refused
        )
    return finish(
        args,
        ActionReport(
            command="reset",
            node=settings.node_name or host.hostname(),
            ok=not refused,
            summary=summary,
            changes=changes,
        ),
    )

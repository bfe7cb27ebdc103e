"""kedge-agent join."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent import enrollment, renewal
from agent.checks import CHECKS
from agent.commands.common import (
    EXIT_FAILED,
    check_ids,
    emitter,
    finish,
    host_from,
    id_list,
    settings_from,
)
from agent.join import run_join
from agent.settings import AgentSettings
from agent.state import StateDir
from kedge.cloud_client import ClientError
from kedge.confirm import confirm
from kedge.errors import UserError
from kedge.host import Host

EPILOG = """\
keadm's flags are derived from the board, not from keadm's defaults: for docker on
KubeEdge 1.13 that is --runtimetype=docker, --remote-runtime-endpoint=
unix:///var/run/dockershim.sock and --cgroupdriver=<docker's driver>.

After keadm, join verifies that edgecore.service is active, the certificates exist and
edgecore stays up for join_settle_s. On failure it names the cause it recognises,
then resets the board so the next join starts clean. The outcome is kept in
<state_dir>/join.json. Joining a board that is already joined changes nothing.
"""


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "join", parents=[common], help="join this board to cloudcore (runs the checks first)",
        description="Run the preflight, then keadm join with the right flags, then verify the node.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument(
        "--cloudcore", metavar="HOST:PORT", help="cloudcore's websocket address (setting cloudcore)"
    )
    token = p.add_mutually_exclusive_group()
    token.add_argument(
        "--token",
        metavar="TOKEN",
        help="join token from `keadm gettoken` (visible in ps; prefer --token-file)",
    )
    token.add_argument(
        "--token-file", type=Path, metavar="FILE", help="file holding the join token"
    )
    p.add_argument(
        "--node-name",
        metavar="NAME",
        help="the node's name (default: node_name setting, then hostname)",
    )
    p.add_argument("--kubeedge-version", metavar="V", help="KubeEdge release, e.g. v1.13.0")
    p.add_argument("--ignore", type=id_list, action="extend", default=[], metavar="ID,…",
                   help="join despite these checks failing (as check --ignore)")  # fmt: skip
    p.add_argument("--yes", "-y", action="store_true", help="do not ask before joining")
    p.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    check_ids("ignore", args.ignore, list(CHECKS))
    overrides: dict[str, Any] = {
        "cloudcore": args.cloudcore, "token": args.token, "token_file": args.token_file,
        "node_name": args.node_name, "kubeedge_version": args.kubeedge_version,
    }  # fmt: skip
    settings = settings_from(args, overrides)
    host = host_from(args)
    emit = emitter(args)
    if await _renew_if_due(settings, host, emit):
        settings = settings_from(args, overrides)  # the enrollment's new token and key
    where = settings.cloudcore or "cloudcore"
    if not confirm(f"Join this board to {where}?", yes=args.yes, command="join"):
        emit("nothing changed")
        return EXIT_FAILED
    state = StateDir(host, settings.state_dir)
    with state.lock("join"):
        report = await run_join(settings, host, state, ignore=args.ignore, emit=emit)
    if not args.json and not report.ok:
        for c in report.checks:
            if c.status.blocks:
                emit(f"✗ {c.id}: {c.summary}\n    {c.remedy.replace(chr(10), chr(10) + '    ')}")
    return finish(args, report)


async def _renew_if_due(settings: AgentSettings, host: Host, emit: Callable[[str], None]) -> bool:
    """The join token from enrollment about to end (or ended): fresh credentials from the
    cloud API, proven with the board's key, before the join needs them. A token the
    settings give (not the enrollment's) is left alone."""
    state = StateDir(host, settings.state_dir)
    known = enrollment.load(state.path)
    if not renewal.due(known, time.time()) or known is None:
        return False
    if (
        settings.token_file is not None
        or settings.token is None
        or (settings.token.get_secret_value() != known.token.get_secret_value())
    ):
        return False
    emit(
        f"the join token from enrollment ends soon or has ended: renewing with {known.cloud_api_url}"
    )
    try:
        fresh = await renewal.renewed(known)
    except ClientError as exc:
        raise UserError(
            f"cannot renew the join token with {known.cloud_api_url}: {exc} "
            "(or enroll again with a secret: kedge-agent enroll --again)"
        ) from exc
    with state.lock("join"):
        enrollment.save(state.path, fresh)
    emit(
        f"  wrote {settings.state_dir / enrollment.ENROLLMENT_FILE}: a fresh token and command key"
    )
    return True

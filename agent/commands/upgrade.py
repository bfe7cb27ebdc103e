"""kedge-agent upgrade."""

from __future__ import annotations

import argparse

from agent import enrollment, renewal
from agent.commands.common import EXIT_FAILED, emitter, finish, host_from, settings_from
from agent.settings import check_kubeedge_release
from agent.state import StateDir
from agent.upgrade import run_upgrade
from kedge.cloud_client import ClientError
from kedge.confirm import confirm
from kedge.errors import UserError

EPILOG = """\
Cloud first: an enrolled board asks the cloud API for fresh credentials, which name the
release cloudcore runs (and make it the target, unless the config file sets
kubeedge_version or --to is given); a board not enrolled needs --cloud-version and
upgrades to kubeedge_version or --to. Refused: a target newer than cloudcore, a downgrade,
more than one minor release at a time, and boards on docker (v1.13 has no
`keadm upgrade edge`: reset, then join the new release on containerd or cri-dockerd).

The installation package is pulled through the runtime first, then
`keadm upgrade edge --toVersion=<target> --image=<repository>/installation-package --force`
runs, and edgecore must report the target, stay up and reconnect to cloudhub.
Running it again when edgecore already runs the target changes nothing.
"""


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "upgrade", parents=[common], help="upgrade this joined board's edgecore (cloud first)",
        description="Upgrade edgecore in place to the target KubeEdge release.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--to", metavar="VERSION", help="target release (default: kubeedge_version)")
    p.add_argument(
        "--cloud-version",
        metavar="VERSION",
        help="the release cloudcore runs, for a board that is not enrolled "
        "(kubectl -n kubeedge get deploy cloudcore -o jsonpath='{..image}')",
    )
    p.add_argument("--yes", "-y", action="store_true", help="do not ask first")
    p.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    for flag, value in (("--to", args.to), ("--cloud-version", args.cloud_version)):
        try:
            if value is not None:
                check_kubeedge_release(value)
        except ValueError as exc:
            raise UserError(f"{flag}: {exc}") from None
    settings = settings_from(args)
    host = host_from(args)
    emit = emitter(args)
    target = args.to or settings.kubeedge_version
    state = StateDir(host, settings.state_dir)
    cloud = args.cloud_version
    known = enrollment.load(state.path)
    if cloud is None and known is not None:
        emit(f"asking {known.cloud_api_url} which release cloudcore runs (fresh credentials)")
        try:
            fresh = await renewal.renewed(known)
        except ClientError as exc:
            raise UserError(
                f"cannot ask {known.cloud_api_url} which release cloudcore runs: {exc} "
                "(or pass --cloud-version)"
            ) from exc
        with state.lock("join"):
            enrollment.save(state.path, fresh)
        cloud = fresh.kubeedge_version
        settings = settings_from(args)  # the enrollment's release is a default of kubeedge_version
        target = args.to or settings.kubeedge_version
    if cloud is None:
        raise UserError(
            "cannot tell which release cloudcore runs: this board is not enrolled; pass "
            "--cloud-version (kubectl -n kubeedge get deploy cloudcore -o jsonpath='{..image}')"
        )
    if not confirm(f"Upgrade edgecore to {target}?", yes=args.yes, command="upgrade"):
        emit("nothing changed")
        return EXIT_FAILED
    with state.lock("join"):
        report = await run_upgrade(settings, host, state, target=target, cloud=cloud, emit=emit)
    return finish(args, report)

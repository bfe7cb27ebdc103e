"""kedge-cloud-api init, status and reset: cloudcore in the cluster."""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from cloud_api.cli.common import EXIT_FAILED, EXIT_OK, connect, follow, print_json
from cloud_api.models import Accepted, CloudcoreRequest, CloudcoreStatus
from cloud_api.settings import CloudSettings
from kedge.confirm import confirm
from kedge.errors import UserError, first_problem
from kedge.kubeedge import CERT_PORT, CLOUDHUB_PORT

PATH = "/api/v1/cloudcore"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             common: argparse.ArgumentParser, client: argparse.ArgumentParser) -> None:  # fmt: skip
    init = sub.add_parser(
        "init", parents=[client], help="install or upgrade cloudcore, and wait until it serves",
        description="keadm init with what the cluster needs: advertise addresses checked against "
        "this host, the Kubernetes version range, keadm's architecture, tolerations for a "
        "tainted single master, --profile version=... Waits until cloudcore is Available and "
        f"ports {CLOUDHUB_PORT} and {CERT_PORT} answer. Running it again with the same values "
        "changes nothing.",
    )  # fmt: skip
    init.add_argument("--advertise-address", required=True, metavar="IP[,IP]",
                      help="this host's address(es) the boards reach (not a NAT or loopback address)")  # fmt: skip
    init.add_argument("--kubeedge-version", metavar="vX.Y.Z",
                      help="default: the service's kubeedge_version")  # fmt: skip
    init.add_argument("--allow-unsupported-kubernetes", action="store_true",
                      help="install even outside KubeEdge's supported Kubernetes range")  # fmt: skip
    init.set_defaults(handler=run_init)
    status = sub.add_parser("status", parents=[client],
                            help="is cloudcore installed, available and reachable")  # fmt: skip
    status.set_defaults(handler=run_status)
    reset = sub.add_parser(
        "reset", parents=[client], help="remove cloudcore (keadm reset) from the cluster",
        description="keadm reset --force, then waits until the kubeedge namespace is gone. "
        "Joined boards lose their cloud; their nodes stay in the cluster.",
    )  # fmt: skip
    reset.add_argument("--yes", "-y", action="store_true", help="do not ask first")
    reset.set_defaults(handler=run_reset)


async def run_init(args: argparse.Namespace, settings: CloudSettings) -> int:
    try:
        body = CloudcoreRequest.model_validate({
            "advertise_address": args.advertise_address, "kubeedge_version": args.kubeedge_version,
            "allow_unsupported_kubernetes": args.allow_unsupported_kubernetes,
        })  # fmt: skip
    except ValidationError as exc:
        raise UserError(f"--{first_problem(exc, 'init').replace('_', '-')}") from None
    async with connect(args, settings) as api:
        accepted = await api.fetch("POST", PATH, Accepted, body)
        return await follow(api, accepted, args.json)


async def run_reset(args: argparse.Namespace, settings: CloudSettings) -> int:
    if not confirm(
        "Remove cloudcore from the cluster (keadm reset)?", yes=args.yes, command="reset"
    ):
        print("nothing changed")
        return EXIT_FAILED
    async with connect(args, settings) as api:
        accepted = await api.fetch("DELETE", PATH, Accepted)
        return await follow(api, accepted, args.json)


async def run_status(args: argparse.Namespace, settings: CloudSettings) -> int:
    async with connect(args, settings) as api:
        s = await api.fetch("GET", PATH, CloudcoreStatus)
    if args.json:
        print_json(s.model_dump_json(indent=2))
        return EXIT_OK
    if not s.installed:
        print("cloudcore: not installed")
        return EXIT_OK
    print(f"cloudcore: {s.version} ({s.image}) on node {s.node or '-'}, pod {s.pod_phase or '-'}, "
          f"{'Available' if s.available else 'NOT available'}")  # fmt: skip
    addresses = (
        ", ".join(s.advertise_addresses or []) or "unknown (installed outside kedge-cloud-api)"
    )
    print(f"advertise: {addresses}")
    for where, ok in s.ports.items():
        print(f"  {where}: {'open' if ok else 'CLOSED'}")
    if s.advisory:
        print(f"SECURITY: {s.advisory} (kedge-cloud-api init --kubeedge-version <that release>)")
    return EXIT_OK

"""kedge-cloud-api nodes and verify: the fleet as the cloud hears it, and the field
story's last step (a pod on every Ready edge node)."""

from __future__ import annotations

import argparse
import time

from pydantic import ValidationError

from cloud_api.cli.common import EXIT_FAILED, EXIT_OK, connect, follow_job, print_json
from cloud_api.models import Accepted, NodePage, VerifyRequest
from cloud_api.settings import CloudSettings
from kedge.errors import UserError, first_problem


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser],
             common: argparse.ArgumentParser, client: argparse.ArgumentParser) -> None:  # fmt: skip
    nodes = sub.add_parser(
        "nodes", parents=[client], help="every board: online or not, Ready, failing checks",
        description="The fleet table the dashboard shows (GET /api/v1/nodes): state from the "
        "boards' MQTT reports, Ready from Kubernetes, the latest check verdicts, resources.",
    )  # fmt: skip
    nodes.add_argument("--status", choices=("online", "stale", "offline", "unknown"),
                       help="only boards in this state")  # fmt: skip
    nodes.add_argument("--failing", metavar="CHECK", help="only boards failing this check")
    nodes.set_defaults(handler=run_nodes)
    verify = sub.add_parser(
        "verify", parents=[client], help="run a pod on every Ready edge node and report each",
        description="The seed guide's final test: a one-replica Deployment pinned to each "
        "Ready edge node; waits for the pods to run, reports each board (Running, or Pending "
        "with the reason), then deletes them. Exit 1 when a board's pod did not run.",
    )  # fmt: skip
    verify.add_argument("--image", default="nginx:1.14.2", help="default: nginx:1.14.2")
    verify.add_argument("--timeout", type=float, default=180.0, metavar="SECONDS",
                        help="how long to wait for the pods (180)")  # fmt: skip
    verify.set_defaults(handler=run_verify)


async def run_nodes(args: argparse.Namespace, settings: CloudSettings) -> int:
    query = "&".join(
        f"{k}={v}" for k, v in (("status", args.status), ("failing", args.failing)) if v
    )
    async with connect(args, settings) as api:
        page = await api.fetch(
            "GET",
            "/api/v1/nodes?limit=10000&refresh=true" + (f"&{query}" if query else ""),
            NodePage,
        )
    if args.json:
        print_json(page.model_dump_json(indent=2))
        return EXIT_OK
    now = time.time()
    print(
        f"{'BOARD':24} {'STATE':8} {'SEEN':>8} {'K8S':9} {'CPU':>5} {'MEM':>5} {'TEMP':>6}  CHECKS"
    )
    for n in page.items:
        seen = f"{now - n.last_seen:.0f} s" if n.last_seen else "never"
        k8s = "-" if n.ready is None else ("Ready" if n.ready else "NotReady")
        cpu = f"{n.cpu_percent:.0f}%" if n.cpu_percent is not None else "-"
        mem = f"{n.memory_percent:.0f}%" if n.memory_percent is not None else "-"
        temp = f"{n.temperature_c:.0f}°C" if n.temperature_c is not None else "-"
        checks = ("failing: " + ", ".join(n.checks.failing)) if n.checks.failing else (
            "pass" if n.checks.ok else "-")  # fmt: skip
        print(f"{n.node:24} {n.state:8} {seen:>8} {k8s:9} {cpu:>5} {mem:>5} {temp:>6}  {checks}")
    return EXIT_OK


async def run_verify(args: argparse.Namespace, settings: CloudSettings) -> int:
    try:
        body = VerifyRequest.model_validate({"image": args.image, "timeout_s": args.timeout})
    except ValidationError as exc:
        raise UserError(
            f"--{first_problem(exc, 'verify').replace('_s', '').replace('_', '-')}"
        ) from None
    async with connect(args, settings) as api:
        accepted = await api.fetch("POST", "/api/v1/verify", Accepted, body)
        end = await follow_job(api, accepted, args.json)
    ran = end is not None and end.state == "succeeded" and bool((end.result or {}).get("ok"))
    return EXIT_OK if ran else EXIT_FAILED

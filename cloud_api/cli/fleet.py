"""kedge-cloud-api nodes and verify: the fleet as the cloud hears it, and the field
story's last step (a pod on every Ready edge node)."""

from __future__ import annotations

import argparse
import time

from pydantic import ValidationError

from cloud_api.cli.common import EXIT_FAILED, EXIT_OK, connect, follow_job, print_json
from cloud_api.models import Accepted, NodePage, Removed, VerifyRequest
from cloud_api.settings import CloudSettings
from kedge.confirm import confirm
from kedge.errors import UserError, first_problem
from kedge.names import is_dns1123_subdomain


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
    remove = sub.add_parser(
        "remove", parents=[client], help="take a board out: its node, its enrollment, its key",
        description="DELETE /api/v1/nodes/NAME: optionally send the board a reset first "
        "(--reset; it must allow reset remotely), delete its Kubernetes node, forget its "
        "reports and revoke its enrollment, so no command can be sealed for it again and its "
        "name is free. Prints what was done.",
    )  # fmt: skip
    remove.add_argument("name", metavar="NAME", help="the board's node name")
    remove.add_argument("--reset", action="store_true", help="send the board a reset first")
    remove.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                        help="how long to wait for the reset's answer (30, at most 60)")  # fmt: skip
    remove.add_argument("--yes", "-y", action="store_true", help="do not ask first")
    remove.set_defaults(handler=run_remove)


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
        fb = n.firstboot
        if fb is not None and fb.state != "done":  # a first boot still under way, or stuck
            print(f"{'':24} first boot: {fb.phase} ({fb.state}): {fb.summary}")
            if fb.remedy:
                print(f"{'':24}   remedy: " + fb.remedy.replace("\n", "\n" + " " * 35))
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


async def run_remove(args: argparse.Namespace, settings: CloudSettings) -> int:
    if not is_dns1123_subdomain(args.name):
        raise UserError(f"{args.name!r} is not a node name (a DNS-1123 subdomain)")
    if not 0 <= args.wait <= 60:
        raise UserError(f"--wait {args.wait:g}: expected 0 to 60 seconds")
    first = "reset it, then " if args.reset else ""
    if not confirm(f"Take {args.name} out: {first}delete its node and revoke its enrollment?",
                   yes=args.yes, command="remove a board"):  # fmt: skip
        print("nothing changed")
        return EXIT_FAILED
    query = f"?reset={'true' if args.reset else 'false'}&wait={args.wait:g}"
    async with connect(args, settings) as api:
        done = await api.fetch("DELETE", f"/api/v1/nodes/{args.name}{query}", Removed)
    if args.json:
        print_json(done.model_dump_json(indent=2))
        return EXIT_OK
    if done.reset is not None:
        print(f"reset: {done.reset}")
    print("Kubernetes node deleted" if done.kubernetes_node_deleted else
          f"Kubernetes node not deleted: {done.kubernetes_error or 'there was none'}")  # fmt: skip
    print("fleet view: forgotten" if done.forgotten else "fleet view: it was not known")
    print("enrollment and command key revoked: its name is free" if done.enrollment_revoked else
          "enrollment: none here")  # fmt: skip
    if done.broker_identity_removed is not None:
        print("broker identity removed, its connection dropped" if done.broker_identity_removed
              else f"broker identity NOT removed: {done.broker_error}")  # fmt: skip
    return EXIT_OK if done.broker_identity_removed is not False else EXIT_FAILED

"""kedge-cloud-api's command line: `serve` runs the service; the other verbs drive a
running one (on this master, they find its address and admin token by themselves)."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.cloud_client import ApiAnswerError, ApiClient, ClientError
from agent.confirm import confirm
from agent.errors import UserError
from agent.logs import configure_logging
from cloud_api import __version__
from cloud_api.auth import ADMIN_TOKEN_FILENAME
from cloud_api.settings import DEFAULT_CONFIG, CloudSettings, load_cloud_settings

EPILOG = """The whole cloud setup on the master:
  kedge-cloud-api init --advertise-address 192.168.1.10   # keadm init with the fixes; waits until ready
  kedge-cloud-api secret create --uses 4 --ttl 24h       # give the secret to the boards
then on each board: kedge-agent enroll --cloud-api http://192.168.1.10:8080 --secret SECRET && kedge-agent join
"""
DURATION_RE = re.compile(r"(\d+)([smhd])")


def duration(value: str) -> float:
    m = DURATION_RE.fullmatch(value.strip())
    if not m:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected a number and a unit, like 90s, 30m, 24h or 7d"
        )
    return int(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kedge-cloud-api",
        description="Drive cloudcore setup on the master, enroll edge boards, serve the fleet view.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"kedge-cloud-api {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help=f"settings file (default {DEFAULT_CONFIG}, or $KEDGE_CLOUD_CONFIG)",
    )
    client = argparse.ArgumentParser(add_help=False, parents=[common])
    client.add_argument(
        "--api", metavar="URL", help="the service (default: http://<listen> from the settings)"
    )
    client.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help=f"admin token (default <state_dir>/{ADMIN_TOKEN_FILENAME})",
    )
    client.add_argument(
        "--ca-file",
        type=Path,
        metavar="FILE",
        help="CA certificate for an https service with a private CA",
    )
    client.add_argument("--json", action="store_true", help="print the API's JSON answer")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser(
        "serve",
        parents=[common],
        help="run the API service",
        description="Run the HTTP API (the systemd unit runs this).",
    )
    serve.add_argument(
        "--listen", metavar="HOST:PORT", help="address to listen on (default 127.0.0.1:8080)"
    )
    serve.add_argument("--state-dir", type=Path, metavar="DIR", help="database and admin token")
    serve.add_argument("--root", type=Path, default=Path("/"), help=argparse.SUPPRESS)

    init = sub.add_parser(
        "init",
        parents=[client],
        help="install or upgrade cloudcore, and wait until it serves",
        description="keadm init with what the cluster needs: advertise addresses checked against "
        "this host, the Kubernetes version range, keadm's architecture, tolerations for a "
        "tainted single master, --profile version=... Waits until cloudcore is Available and "
        "ports 10000 and 10002 answer. Running it again with the same values changes nothing.",
    )
    init.add_argument(
        "--advertise-address",
        required=True,
        metavar="IP[,IP]",
        help="this host's address(es) the boards reach (not a NAT or loopback address)",
    )
    init.add_argument(
        "--kubeedge-version", metavar="vX.Y.Z", help="default: the service's kubeedge_version"
    )
    init.add_argument(
        "--allow-unsupported-kubernetes",
        action="store_true",
        help="install even outside KubeEdge's supported Kubernetes range",
    )
    sub.add_parser(
        "status", parents=[client], help="is cloudcore installed, available and reachable"
    )
    reset = sub.add_parser(
        "reset",
        parents=[client],
        help="remove cloudcore (keadm reset) from the cluster",
        description="keadm reset --force, then waits until the kubeedge namespace is gone. "
        "Joined boards lose their cloud; their nodes stay in the cluster.",
    )
    reset.add_argument("--yes", "-y", action="store_true", help="do not ask first")
    sub.add_parser(
        "token", parents=[client], help="print the current join token (a secret) to stdout"
    )
    sub.add_parser("boards", parents=[client], help="list enrolled boards and whether they joined")
    secret = sub.add_parser("secret", help="enrollment secrets").add_subparsers(
        dest="secret_command", metavar="COMMAND", required=True
    )
    create = secret.add_parser(
        "create",
        parents=[client],
        help="create an enrollment secret for boards",
        description="The secret is printed once; only its hash is stored.",
    )
    create.add_argument(
        "--ttl", type=duration, metavar="DURATION", help="expires after this (90s, 30m, 24h, 7d)"
    )
    create.add_argument("--uses", type=int, metavar="N", help="how many boards may enroll with it")
    create.add_argument("--note", default="", help="what it is for (shown in the list)")
    secret.add_parser("list", parents=[client], help="list enrollment secrets (never the secrets)")
    revoke = secret.add_parser(
        "revoke",
        parents=[client],
        help="revoke an enrollment secret by its id",
        description="Boards can no longer enroll with it; enrolled boards stay.",
    )
    revoke.add_argument("id", help="the secret's id (from secret create or secret list)")
    return parser


def _api_and_token(args: argparse.Namespace, settings: CloudSettings) -> tuple[str, str]:
    url: str = args.api or ""
    if not url:
        host, _, port = settings.listen.rpartition(":")
        host = "127.0.0.1" if host in ("0.0.0.0", "", "::", "[::]") else host  # noqa: S104 - a wildcard, mapped
        url = f"{'https' if settings.tls_cert_file else 'http'}://{host}:{port}"
    path = args.token_file or settings.state_dir / ADMIN_TOKEN_FILENAME
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise UserError(
            f"cannot read the admin token {path}: {exc.strerror} (run as root on the master, "
            "or pass --token-file)"
        ) from exc
    return url, token


def _when(epoch: float | None) -> str:
    return (
        "never"
        if epoch is None
        else datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    )


async def _follow(api: ApiClient, answer: dict[str, Any], as_json: bool) -> int:
    """Print a job's lines as they come; the exit code is its outcome."""
    print(answer["message"], file=sys.stderr if as_json else sys.stdout, flush=True)
    job = answer.get("job")
    if not job:
        if as_json:
            print(json.dumps(answer, indent=2))
        return 0
    end: dict[str, Any] = job
    async for event, data in api.events(f"/api/v1/jobs/{job['id']}/events", after=-1):
        if event == "line" and not as_json:
            print("  " + data["line"], flush=True)
        elif event == "end":
            end = data
    if as_json:
        print(json.dumps(end, indent=2))
    elif end["state"] == "succeeded":
        print("✓ done")
    else:
        print(f"✗ {end['error']['message'] if end.get('error') else 'the job did not finish'}")
    return 0 if end["state"] == "succeeded" else 1


def _print_status(s: dict[str, Any]) -> None:
    if not s["installed"]:
        print("cloudcore: not installed")
        return
    print(
        f"cloudcore: {s['version']} ({s['image']}) on node {s['node'] or '-'}, pod {s['pod_phase'] or '-'}, "
        f"{'Available' if s['available'] else 'NOT available'}"
    )
    print(
        "advertise: "
        + (
            ", ".join(s["advertise_addresses"] or [])
            or "unknown (installed outside kedge-cloud-api)"
        )
    )
    for where, ok in s["ports"].items():
        print(f"  {where}: {'open' if ok else 'CLOSED'}")


async def run_client(args: argparse.Namespace, settings: CloudSettings) -> int:
    url, token = _api_and_token(args, settings)
    async with ApiClient(url, token, ca_file=args.ca_file) as api:
        if args.command == "init":
            body = {
                "advertise_address": args.advertise_address,
                "allow_unsupported_kubernetes": args.allow_unsupported_kubernetes,
            }
            if args.kubeedge_version:
                body["kubeedge_version"] = args.kubeedge_version
            return await _follow(
                api, (await api.call("POST", "/api/v1/cloudcore", body))[1], args.json
            )
        if args.command == "reset":
            if not confirm(
                "Remove cloudcore from the cluster (keadm reset)?", yes=args.yes, command="reset"
            ):
                print("nothing changed")
                return 1
            return await _follow(api, (await api.call("DELETE", "/api/v1/cloudcore"))[1], args.json)
        path = {
            "status": "/api/v1/cloudcore",
            "token": "/api/v1/cloudcore/token",
            "boards": "/api/v1/boards",
            "secret": "/api/v1/enrollment-secrets",
        }[args.command]
        if args.command == "secret" and args.secret_command == "create":  # noqa: S105 - a verb
            _, data = await api.call(
                "POST", path, {"ttl_s": args.ttl, "uses": args.uses, "note": args.note}
            )
        elif args.command == "secret" and args.secret_command == "revoke":  # noqa: S105 - a verb
            if not re.fullmatch(r"[0-9a-f]{1,64}", args.id):
                raise UserError(
                    f"secret id {args.id!r}: expected the hex id that secret list shows"
                )
            _, data = await api.call("DELETE", f"{path}/{args.id}")
        else:
            _, data = await api.call("GET", path)
    if args.json:
        print(json.dumps(data, indent=2))
    elif args.command == "status":
        _print_status(data)
    elif args.command == "token":
        print(data["token"])
        print(f"expires {_when(data['expires_at'])}", file=sys.stderr)
    elif args.command == "boards":
        for b in data:
            print(
                f"{b['node_name']:30} {b['arch']:6} agent {b['agent_version']:10} "
                f"enrolled {_when(b['enrolled_at'])}  {'joined' if b['joined'] else 'not joined'}"
            )
    elif args.secret_command == "revoke":  # noqa: S105 - a verb
        print(f"revoked {data['revoked']}")
    elif args.secret_command == "create":  # noqa: S105 - a verb
        print(data["secret"])
        print(
            f"id {data['id']}, expires {_when(data['expires_at'])}, uses {data['uses_left'] or 'unlimited'}; "
            f"on each board: kedge-agent enroll --cloud-api {url} --secret <this secret>",
            file=sys.stderr,
        )
    else:
        for s in data:
            print(
                f"{s['id']}  expires {_when(s['expires_at'])}  uses left {s['uses_left'] or 'unlimited'}  {s['note']}"
            )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        overrides = (
            {"listen": args.listen, "state_dir": args.state_dir} if args.command == "serve" else {}
        )
        settings = load_cloud_settings(args.config, overrides)
        configure_logging(settings.log_level)
        if args.command == "serve":
            from cloud_api.server import serve

            return asyncio.run(serve(settings, args.root))
        return asyncio.run(run_client(args, settings))
    except ApiAnswerError as exc:
        print(f"kedge-cloud-api: error: {exc.message}", file=sys.stderr)
        for key, value in exc.details.items():
            print(f"  {key}: {value}", file=sys.stderr)
        return 2 if exc.status in (400, 401, 403, 404, 422) else 1
    except ClientError as exc:
        print(
            f"kedge-cloud-api: error: {exc} (is the service running? systemctl status kedge-cloud-api)",
            file=sys.stderr,
        )
        return 1
    except UserError as exc:
        print(f"kedge-cloud-api: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"kedge-cloud-api: error: {exc.strerror or exc}", file=sys.stderr)
        return 1

"""kedge-agent enroll: trade an enrollment secret for this board's join parameters."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from agent import __version__, enrollment, renewal
from agent.commands.common import EXIT_FAILED, EXIT_USAGE, emitter, finish, host_from, settings_from
from agent.state import StateDir
from kedge.cloud_client import ApiAnswerError, ClientError
from kedge.errors import UserError
from kedge.kubeedge import ARCH_BY_MACHINE
from kedge.names import HTTP_URL_RE, is_dns1123_subdomain
from kedge.private_files import read_secret
from kedge.wire import ActionReport, Change, EnrollPending, EnrollRequest

EPILOG = """\
The cloud admin creates the secret on the master (kedge-cloud-api secret create).
The answer (cloudcore's address, the join token, the KubeEdge version, the MQTT broker)
is kept in <state_dir>/enrollment.json, mode 0600, and used wherever the settings say
nothing, so `kedge-agent join` needs no flags afterwards. Enrolling again with the same
cloud API and node name changes nothing while the token is valid; --again forces it.

The answer also holds this board's command key: the cloud API seals every command to
the board with it, and the board proves with it that its name is its own. An expired
join token or a key to rotate needs no new secret: --renew proves the board with its
current key and gets a fresh token and a new key (the old key stops working).
"""


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "enroll",
        parents=[common],
        help="get this board's join parameters from the cloud API",
        description="Enroll this board with kedge-cloud-api using an enrollment secret.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--cloud-api",
        required=True,
        metavar="URL",
        help="the cloud API, e.g. http://192.168.1.10:8080",
    )
    secret = p.add_mutually_exclusive_group(required=True)
    secret.add_argument(
        "--renew",
        action="store_true",
        help="already enrolled: get a fresh join token and a new command key, proving this "
        "board with its current key (no secret)",
    )
    secret.add_argument(
        "--secret", metavar="SECRET", help="enrollment secret (visible in ps; prefer --secret-file)"
    )
    secret.add_argument(
        "--secret-file", type=Path, metavar="FILE", help="file holding the enrollment secret"
    )
    p.add_argument(
        "--node-name",
        metavar="NAME",
        help="the node's name (default: node_name setting, then hostname)",
    )
    p.add_argument(
        "--ca-file",
        type=Path,
        metavar="FILE",
        help="CA certificate that signed the cloud API's (for https with a private CA)",
    )
    p.add_argument(
        "--again", action="store_true", help="enroll even if already enrolled with this cloud API"
    )
    p.set_defaults(handler=run)


def _secret(args: argparse.Namespace) -> str:
    if args.secret is not None:
        return str(args.secret).strip()
    return read_secret(args.secret_file, "--secret-file")


async def run(args: argparse.Namespace) -> int:
    if not HTTP_URL_RE.fullmatch(args.cloud_api):
        raise UserError(
            f"--cloud-api {args.cloud_api!r}: expected http://HOST:PORT or https://HOST:PORT"
        )
    url = args.cloud_api.rstrip("/")
    secret = None if args.renew else _secret(args)
    settings = settings_from(args, {"node_name": args.node_name})
    host = host_from(args)
    node = settings.node_name or host.hostname()
    if not is_dns1123_subdomain(node):
        raise UserError(
            f"node name {node!r} is not a DNS-1123 subdomain (lower-case letters, digits, '-', '.'): "
            "pass --node-name"
        )
    arch = ARCH_BY_MACHINE.get(host.machine())
    if arch is None:
        raise UserError(
            f"this machine ({host.machine()}) is not one KubeEdge runs on (amd64, arm64, arm)"
        )
    state = StateDir(host, settings.state_dir)
    emit = emitter(args)
    with state.lock("enroll"):
        known = enrollment.load(state.path)
        fresh = known is not None and (known.token_expires_at or float("inf")) > time.time() + 600
        if args.renew and (known is None or known.command_key is None or known.node_name != node):
            raise UserError(
                f"--renew: this board is not enrolled as {node} with a command key: enroll it with "
                "a secret first (--secret or --secret-file)"
            )
        if (
            known
            and fresh
            and not args.renew
            and not args.again
            and (known.cloud_api_url, known.node_name) == (url, node)
        ):
            report = ActionReport(
                command="enroll",
                node=node,
                ok=True,
                summary=f"already enrolled as {node} with {url}: nothing changed",
            )
            return finish(args, report)
        if args.renew:
            assert known is not None
            if known.cloud_api_url != url:
                raise UserError(
                    f"--renew: this board enrolled with {known.cloud_api_url}, not {url}"
                )
            emit(f"renewing {node}'s credentials with {url}")
            call: Coroutine[Any, Any, enrollment.Enrollment | EnrollPending] = renewal.renewed(
                known, ca_file=args.ca_file
            )
        else:
            body = EnrollRequest(
                node_name=node,
                secret=SecretStr(secret or ""),
                arch=arch,
                agent_version=__version__,
                **enrollment.hardware(host),
                **enrollment.proof_fields(known, node),
            )
            emit(f"enrolling {node} ({arch}) with {url}")
            call = enrollment.request(url, body, ca_file=args.ca_file)
        try:
            saved = await call
        except ApiAnswerError as exc:
            print(f"kedge-agent: enroll refused: {exc.message}", file=sys.stderr)
            return EXIT_USAGE if exc.status in (401, 403, 409, 422) else EXIT_FAILED
        except ClientError as exc:
            print(f"kedge-agent: {exc}", file=sys.stderr)
            return EXIT_FAILED
        if isinstance(saved, EnrollPending):
            print(f"kedge-agent: enroll: waiting for approval: {saved.reason}; run this again "
                  f"after that (in {saved.retry_after_s} s or more)", file=sys.stderr)  # fmt: skip
            return EXIT_FAILED
        enrollment.save(state.path, saved)
    expires = saved.token_expires_at
    until = (
        datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M:%SZ") if expires else "never"
    )
    changes = [
        Change(
            action="write",
            target=str(settings.state_dir / enrollment.ENROLLMENT_FILE),
            detail=f"cloudcore {saved.cloudcore}, KubeEdge {saved.kubeedge_version}, token until {until}",
        )
    ]
    if saved.mqtt is not None:
        changes.append(
            Change(
                action="write",
                target=str(settings.state_dir / enrollment.MQTT_PASSWORD_FILE),
                detail=f"broker {saved.mqtt.host}:{saved.mqtt.port}",
            )
        )
    report = ActionReport(
        command="enroll",
        node=node,
        ok=True,
        changes=changes,
        summary=f"enrolled as {node} with {url}; next: kedge-agent join",
    )
    if not args.json:
        for c in changes:
            emit(f"  wrote {c.target}: {c.detail}")
    return finish(args, report)

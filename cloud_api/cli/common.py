"""What the client verbs share: how to reach the service, and how to show a job."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from cloud_api.auth import ADMIN_TOKEN_FILENAME
from cloud_api.models import Accepted, JobView
from cloud_api.settings import DEFAULT_CONFIG, CloudSettings
from kedge.cloud_client import ApiClient
from kedge.private_files import read_secret

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def common_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, metavar="FILE",
                        help=f"settings file (default {DEFAULT_CONFIG}, or $KEDGE_CLOUD_CONFIG)")  # fmt: skip
    return common


def client_parser(common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    client = argparse.ArgumentParser(add_help=False, parents=[common])
    client.add_argument("--api", metavar="URL",
                        help="the service (default: http://<listen> from the settings)")  # fmt: skip
    client.add_argument("--token-file", type=Path, metavar="FILE",
                        help=f"admin token (default <state_dir>/{ADMIN_TOKEN_FILENAME})")  # fmt: skip
    client.add_argument("--ca-file", type=Path, metavar="FILE",
                        help="CA certificate for an https service with a private CA")  # fmt: skip
    client.add_argument("--json", action="store_true", help="print the API's JSON answer")
    return client


def service_url(args: argparse.Namespace, settings: CloudSettings) -> str:
    if args.api:
        return str(args.api)
    host, _, port = settings.listen.rpartition(":")
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::", "[::]") else host  # noqa: S104 - a wildcard, mapped
    return f"{'https' if settings.tls_cert_file else 'http'}://{host}:{port}"


def connect(args: argparse.Namespace, settings: CloudSettings) -> ApiClient:
    """A client of the running service, with the admin token this master keeps."""
    path = args.token_file or settings.state_dir / ADMIN_TOKEN_FILENAME
    token = read_secret(
        path, "the admin token", hint="run as root on the master, or pass --token-file"
    )
    return ApiClient(service_url(args, settings), token, ca_file=args.ca_file)


def when(epoch: float | None) -> str:
    if epoch is None:
        return "never"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def print_json(text: str) -> None:
    sys.stdout.write(text + "\n")


async def follow(api: ApiClient, accepted: Accepted, as_json: bool) -> int:
    """Print a job's lines as they come; the exit code is its outcome."""
    end = await follow_job(api, accepted, as_json)
    return EXIT_OK if end is None or end.state == "succeeded" else EXIT_FAILED


async def follow_job(api: ApiClient, accepted: Accepted, as_json: bool) -> JobView | None:
    """follow(), returning how the job ended (None: there was nothing to do)."""
    print(accepted.message, file=sys.stderr if as_json else sys.stdout, flush=True)
    if accepted.job is None:
        if as_json:
            print_json(accepted.model_dump_json(indent=2))
        return None
    end = accepted.job
    async for event, data in api.events(f"/api/v1/jobs/{end.id}/events", after=-1):
        if event == "line" and not as_json:
            print("  " + str(data.get("line", "")), flush=True)
        elif event == "end":
            end = JobView.model_validate(data)
    if as_json:
        print_json(end.model_dump_json(indent=2))
    elif end.state == "succeeded":
        print("✓ done")
    else:
        print(f"✗ {end.error.message if end.error else 'the job did not finish'}")
    return end


def dump(value: object) -> str:
    return json.dumps(value, indent=2)

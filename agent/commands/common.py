"""What every subcommand shares: common flags, settings, host, output."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from agent.settings import DEFAULT_CONFIG, AgentSettings, load_settings
from kedge.errors import UserError
from kedge.host import Host
from kedge.logs import configure_logging
from kedge.wire import ActionReport

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def common_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, metavar="FILE",
                        help=f"settings file (default {DEFAULT_CONFIG}, or $KEDGE_AGENT_CONFIG)")  # fmt: skip
    common.add_argument("--root", type=Path, metavar="DIR", default=Path("/"),
                        help="board filesystem root: a mounted image or fixture (default /)")  # fmt: skip
    common.add_argument("--json", action="store_true", help="print one JSON document")
    common.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more to stderr (-vv: debug)"
    )
    return common


def id_list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def settings_from(
    args: argparse.Namespace, overrides: dict[str, Any] | None = None
) -> AgentSettings:
    settings = load_settings(args.config, overrides, root=args.root)
    level = (
        ["warning", "info", "debug"][min(args.verbose, 2)] if args.verbose else settings.log_level
    )
    configure_logging(level)
    return settings


def host_from(args: argparse.Namespace) -> Host:
    root: Path = args.root
    if not root.is_dir():
        raise UserError(f"--root {root}: not a directory")
    return Host(root)


def check_ids(flag: str, ids: list[str], known: list[str]) -> None:
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise UserError(
            f"--{flag}: unknown check id {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(known)}; see kedge-agent check --list)"
        )


def emitter(args: argparse.Namespace) -> Any:
    """Progress lines go to stderr in --json mode, so stdout stays one document."""
    stream = sys.stderr if args.json else sys.stdout

    def emit(line: str) -> None:
        print(line, file=stream, flush=True)

    return emit


def finish(args: argparse.Namespace, report: ActionReport) -> int:
    if args.json:
        sys.stdout.write(report.to_json() + "\n")
    else:
        for cause in report.causes:
            print(f"cause: {cause.summary}\n  evidence: {cause.evidence}\n  remedy: {cause.remedy}")
        print(("✓ " if report.ok else "✗ ") + report.summary)
    return EXIT_OK if report.ok else EXIT_FAILED

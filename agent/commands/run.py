"""kedge-agent run and kedge-agent status."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime

import psutil
from pydantic import ValidationError

from agent import firstboot_state
from agent.commands.common import EXIT_FAILED, EXIT_OK, host_from, settings_from
from agent.daemon import Daemon, status_path
from agent.settings import AgentSettings
from agent.state import StateCorrupt, StateDir
from kedge.errors import ConfigError
from kedge.logs import configure_logging
from kedge.wire import DaemonStatus, FirstBootProgress

RUN_EPILOG = """\
Topics (prefix `mqtt.topic_prefix`, default kedge; see docs/mqtt.md):
  kedge/<node>/status       retained online/offline (offline is the Last Will)
  kedge/<node>/health       a health report every report_interval (QoS 1, spooled offline)
  kedge/<node>/checks       the latest preflight report, retained
  kedge/<node>/cmd          commands in: ping, check, fix, join, reset (JSON)
  kedge/<node>/cmd/result   their results
Home Assistant discovery is published under mqtt.discovery_prefix (homeassistant).
Under systemd: Type=notify readiness, STATUS= lines and watchdog pings; SIGHUP reloads.
"""


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    run_p = sub.add_parser(
        "run", parents=[common], help="the board daemon: health over MQTT, remote commands",
        description="Report the board's health over MQTT (and to Home Assistant) until stopped.",
        epilog=RUN_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    run_p.set_defaults(handler=run)
    status_p = sub.add_parser(
        "status", parents=[common], help="what the daemon last did (from the state directory)",
        description="Show the daemon's view: connected or spooling, spool depth, last report, join state, checks.",
    )  # fmt: skip
    status_p.set_defaults(handler=status)


def _daemon_settings(args: argparse.Namespace) -> AgentSettings:
    settings = settings_from(args)
    if not args.verbose and settings.log_level == "warning":
        configure_logging("info")  # a daemon's journal wants its lifecycle events
    return settings


async def run(args: argparse.Namespace) -> int:
    settings = _daemon_settings(args)
    cli_args = ("--config", str(args.config)) if args.config else ()
    return await Daemon(
        settings, host_from(args), lambda: _daemon_settings(args), cli_args=cli_args
    ).run()


def _daemon_status(state: StateDir) -> DaemonStatus | None:
    try:
        return DaemonStatus.model_validate_json(status_path(state).read_bytes())
    except (OSError, ValidationError):
        return None


def _link(daemon: DaemonStatus) -> str:
    if daemon.connected:
        return "connected"
    if daemon.refused:
        return f"broker refused: {daemon.refused} (check mqtt.username and mqtt.password_file)"
    return f"spooling ({daemon.last_error or 'not connected'})"


async def status(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    state = StateDir(host_from(args), settings.state_dir)
    daemon = _daemon_status(state)
    join_error = None
    try:
        record = state.load_join()
    except StateCorrupt as exc:
        record, join_error = None, str(exc)
    running = daemon is not None and daemon.pid != os.getpid() and psutil.pid_exists(daemon.pid)
    try:
        first = firstboot_state.load(state.path)
    except ConfigError as exc:
        first, join_error = None, join_error or str(exc)
    doc = {
        "firstboot": first.progress.model_dump(mode="json") if first else None,
        "daemon_running": running,
        "daemon": daemon.model_dump(mode="json") if daemon else None,
        "join": record.model_dump(mode="json") if record else None,
        "join_error": join_error,
        "now": datetime.now(UTC).isoformat(),
    }
    if args.json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    else:
        if first is not None:
            _print_firstboot(first.progress)
        if daemon is None:
            print("daemon: never ran on this board (no daemon.json in the state directory)")
        else:
            print(
                f"daemon: {'running' if running else 'not running'}, pid {daemon.pid}, {_link(daemon)}"
            )
            print(
                f"broker: {daemon.broker}; spool {daemon.spool_depth} queued, {daemon.spool_dropped} dropped"
            )
            last = daemon.last_report.isoformat() if daemon.last_report else "none yet"
            print(f"last report: {last}")
            checks = daemon.checks
            if checks is None:
                verdict = "not run yet"
            else:
                verdict = "ok" if checks.ok else "failing: " + ", ".join(checks.failing)
            print(f"checks: {verdict}")
        if join_error:
            print(f"join: unknown: {join_error}")
        elif record:
            print(f"join: {record.phase} to {record.cloudcore} as {record.node}")
        else:
            print("join: never joined")
    return EXIT_OK if running else EXIT_FAILED


def _print_firstboot(p: FirstBootProgress) -> None:
    print(f"first boot: {p.phase} ({p.state}) since {p.since:%Y-%m-%d %H:%M:%S}Z: {p.summary}")
    if p.remedy:
        print(f"  remedy: {p.remedy}")
    for t in p.timeline:
        took = (
            f"{(t.finished_at - t.started_at).total_seconds():6.1f} s"
            if t.finished_at
            else "   ... "
        )
        print(f"  {t.started_at:%H:%M:%S} {t.phase:10} {took}  {t.outcome}")

"""kedge-agent firstboot: from a seed on the boot partition to a joined, reporting board
(docs/firstboot.md). The kedge-firstboot unit runs it at boot while a seed is there or a
first boot is unfinished."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from agent import seed_state
from agent.commands.common import EXIT_OK, emitter, host_from, settings_from
from agent.firstboot import intake
from agent.firstboot.phases import Blocked, Context, Reseeded, new_record, run_phases
from agent.firstboot.report import Reporter
from agent.firstboot_state import Record, load, save
from agent.state import StateDir
from kedge import seed
from kedge.errors import ConfigError
from kedge.host import Host

EPILOG = f"""\
Looks for the seed at {", ".join(seed.SEED_PATHS)} (the first present wins), takes it
into the state directory (0600) and scrubs it there, then: waits for the cloud API and
a sane clock, enrolls (its node name from the seed's pattern), checks, fixes what `fix`
may fix, joins, and enables and starts kedge-agent run. Every phase is in the journal,
in `kedge-agent status` and, once enrolled, on MQTT (kedge/<node>/firstboot, retained).

Run again, it resumes at the phase it was in; once joined it does nothing, unless a new
seed is on the boot partition. Exit 0: joined (or nothing to do); 1: not yet, the unit
tries again later; 2: blocked until a person acts (the status says what).
"""


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    p = sub.add_parser(
        "firstboot",
        parents=[common],
        help="first boot from a seed: enroll, check, fix, join, start reporting",
        description="Bring a freshly flashed board from its seed to a joined, reporting node.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(handler=run)


async def run(args: argparse.Namespace) -> int:
    host = host_from(args)
    settings = settings_from(args)
    state = StateDir(host, settings.state_dir)
    emit = emitter(args)
    record = load(state.path)
    while True:
        found = intake.find(host)
        if found is not None and (record is None or found.sha256 != record.seed_sha256):
            emit(f"firstboot: taking the seed {found.where}")
            with state.lock("firstboot"):
                taken = intake.take(host, state.path, found)  # a bad seed: ConfigError, kept
            record = new_record(taken)
            save(state.path, record)
            emit(f"firstboot: node {taken.node}, cloud API {taken.cloud_api}; "
                 f"{found.where} scrubbed")  # fmt: skip
        if record is None:
            emit(f"firstboot: no seed ({', '.join(seed.SEED_PATHS)}) and no first boot begun: "
                 "nothing to do")  # fmt: skip
            return EXIT_OK
        if record.progress.state == "done":
            emit(f"firstboot: finished {record.progress.since:%Y-%m-%d %H:%M:%S}Z "
                 f"({record.progress.summary}): nothing to do")  # fmt: skip
            return EXIT_OK
        try:
            return await _resume(args, host, state, record, emit)
        except Reseeded:
            emit("firstboot: a new seed is on the boot partition: starting over with it")
            continue


async def _resume(
    args: argparse.Namespace,
    host: Host,
    state: StateDir,
    record: Record,
    emit: Callable[[str], None],
) -> int:
    taken = seed_state.load(state.path)
    if taken is None:
        raise ConfigError(
            f"{state.path / seed_state.TAKEN_FILE}: missing, but a first boot is recorded: put "
            "the seed back on the boot partition"
        )
    reporter = Reporter(state.path, record, emit)
    ctx = Context(host, state, lambda: settings_from(args), reporter, taken)
    if record.progress.phase not in ("seed", "network", "clock", "enrolling"):
        reporter.settings = ctx.settings
    try:
        return await run_phases(ctx)
    except Blocked as exc:
        await reporter.enter(reporter.progress.phase, exc.state, exc.summary, remedy=exc.remedy,
                             check=exc.check)  # fmt: skip
        return exc.code

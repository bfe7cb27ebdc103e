"""clock: step the clock with what the board has."""

from __future__ import annotations

from agent.fixes.base import CannotFix, FixContext, fixes
from kedge.errors import CommandError
from kedge.names import ntp_server
from kedge.wire import CheckResult


def _plans(fx: FixContext) -> list[list[str]]:
    servers = [ntp_server(s)[0] for s in fx.settings.ntp_servers]
    plans = [["chronyc", "makestep"], ["timedatectl", "set-ntp", "true"]]
    if servers:
        plans.append(["ntpdate", "-u", servers[0]])
    return plans


@fixes("clock")
async def fix_clock(fx: FixContext, result: CheckResult) -> None:
    found = fx.facts.clock
    if found is None or (found.offset_s is None and found.cert_not_before is None):
        raise CannotFix(
            "no time source answered, so there is nothing to step the clock to", result.remedy
        )
    for argv in _plans(fx):
        if fx.host.which(argv[0]) is None:
            continue
        fx.change("run", " ".join(argv), f"clock is {result.summary.removeprefix('clock is ')}")
        if fx.dry_run:
            return
        try:
            outcome = await fx.host.run(argv, timeout=60)
        except CommandError as exc:
            raise CannotFix(f"{argv[0]} failed: {exc}", result.remedy) from exc
        if not outcome.ok:
            raise CannotFix(
                f"{' '.join(argv)} exited {outcome.returncode}: {outcome.stderr.strip()}",
                result.remedy,
            )
        return
    raise CannotFix("no clock tool on the board (chronyc, timedatectl or ntpdate)",
                    "apt install chrony (it keeps the clock right from then on)")  # fmt: skip

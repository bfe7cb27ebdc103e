"""leftovers (the full reset) and conflicts (only when asked twice over)."""

from __future__ import annotations

from agent import edgecore_run
from agent.checks.conflicts import K3S_UNITS, unit_files
from agent.fixes.base import CannotFix, FixContext, fixes
from agent.reset import reset_board
from kedge.errors import CommandError
from kedge.kubeedge import Release
from kedge.wire import CheckResult


@fixes("leftovers")
async def fix_leftovers(fx: FixContext, result: CheckResult) -> None:
    for change in await reset_board(fx.host, fx.docker, fx.settings, dry_run=True):
        fx.change(change.action, change.target, change.detail)
    if not fx.dry_run:
        await reset_board(fx.host, fx.docker, fx.settings)


@fixes("edgecore")
async def fix_edgecore(fx: FixContext, result: CheckResult) -> None:
    release = Release(fx.settings.kubeedge_version)
    fx.change("start", "edgecore", "the joined board's edgecore was not running")
    if fx.dry_run:
        return
    try:
        await edgecore_run.start(fx.host, release)
    except CommandError as exc:
        raise CannotFix(f"cannot start edgecore: {exc}", result.remedy) from exc


@fixes("conflicts")
async def fix_conflicts(fx: FixContext, result: CheckResult) -> None:
    if not fx.force_remove_conflicts:
        raise CannotFix(
            "another cluster's agent is on this board; kedge does not touch it unless asked",
            "Re-run with --force-remove-conflicts to stop and disable the k3s/kubelet units "
            "(their data stays), or remove them by hand:\n" + result.remedy,
        )
    units = [
        u for u in (*K3S_UNITS, "kubelet.service") if unit_files(fx.host, u) or u in result.summary
    ]
    if not units:
        raise CannotFix(
            "no k3s or kubelet unit to stop; the findings need removing by hand", result.remedy
        )
    for unit in units:
        fx.change("run", f"systemctl disable --now {unit}", "its data is kept")
        if fx.dry_run:
            continue
        try:
            done = await fx.host.run(["systemctl", "disable", "--now", unit], timeout=120)
        except CommandError as exc:
            raise CannotFix(f"cannot stop {unit}: {exc}", result.remedy) from exc
        if not done.ok:
            raise CannotFix(
                f"systemctl disable --now {unit} exited {done.returncode}", result.remedy
            )

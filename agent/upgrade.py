"""`kedge-agent upgrade`: bring a joined board's edgecore to the target release with
`keadm upgrade edge` (edge/upgrade.go, from v1.16), the cloud first.

The target is the kubeedge_version setting (or --to). The upgrade refuses what KubeEdge
does not support: a board newer than its cloudcore (upgrade the cloud first), a
downgrade (that is `keadm rollback edge`), dockershim boards (v1.13 has no `upgrade edge`;
they join again on a CRI runtime), more than one minor release at a time.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from agent import edgecore_run
from agent.join import hub_connected, is_joined, settle
from agent.settings import AgentSettings
from agent.state import StateDir, now
from kedge.cri import CriClient, CriError
from kedge.errors import CommandError, UserError
from kedge.host import Host
from kedge.kubeedge import EDGECORE_BIN, Release, refuse_advised
from kedge.names import version_tuple
from kedge.wire import ActionReport, Change

log = structlog.get_logger(__name__)
KEADM_UPGRADE_TIMEOUT_S = 900.0  # a pull of the installation package on a slow link
IDEMPOTENCY_RECORD = "/etc/kubeedge/idempotency_record"
FIRST_UPGRADABLE = (1, 16)  # `keadm upgrade edge` and the CRI copy step


def plan(current: str, target: str, cloud: str | None) -> str | None:
    """Why this upgrade must not run, or None."""
    now_, to = version_tuple(current)[:3], version_tuple(target)[:3]
    if to == now_:
        return None
    if (advised := refuse_advised(target)) is not None:
        return advised
    if to < now_:
        return (
            f"{target} is older than the running {current}: that is a rollback "
            "(keadm rollback edge), not an upgrade"
        )
    if now_[:2] < FIRST_UPGRADABLE:
        return (
            f"edgecore {current} cannot be upgraded in place (keadm upgrade edge exists from "
            f"v1.16): reset the board and join {target} on a CRI runtime (docs/kubeedge-versions.md)"
        )
    if to[1] - now_[1] > 1:
        nxt = f"v1.{now_[1] + 1}"
        return (
            f"{current} → {target} skips minor releases; KubeEdge upgrades one minor release "
            f"at a time: upgrade to the newest {nxt}.x first"
        )
    if cloud is not None and version_tuple(cloud)[:3] < to:
        return (
            f"cloudcore runs {cloud}, older than {target}: upgrade the cloud first "
            f"(kedge-cloud-api init --kubeedge-version {target}), then the boards"
        )
    return None


def _stale_lock(host: Host) -> list[Change]:
    """keadm's upgrade lock (/etc/kubeedge/idempotency_record, edge/common.go@v1.23.1
    preRun): a killed `keadm upgrade edge` or `rollback edge` leaves it and every later
    one refuses ("the mutually exclusive command is being executed"). No keadm runs here
    (checked first): it is stale."""
    if not host.exists(IDEMPOTENCY_RECORD):
        return []
    host.path(IDEMPOTENCY_RECORD).unlink(missing_ok=True)
    return [
        Change(
            action="remove",
            target=IDEMPOTENCY_RECORD,
            detail="left by a keadm upgrade or rollback that was killed: keadm would refuse",
        )
    ]


async def _started_again(host: Host, settings: AgentSettings) -> list[Change]:
    """keadm stops edgecore before it replaces the binary; a failure after that leaves
    the board without edgecore (and, through systemd, disabled). Start what is there."""
    if await edgecore_run.is_active(host) or not host.exists(EDGECORE_BIN):
        return []
    try:
        how = await edgecore_run.start(host, Release(settings.kubeedge_version))
    except CommandError as exc:
        log.warning("upgrade.restart", error=str(exc))
        return []
    return [
        Change(
            action="start",
            target="edgecore",
            detail=f"keadm upgrade edge failed and left it stopped; started {how}",
        )
    ]


async def running_version(host: Host) -> str | None:
    """What the edgecore binary says it is (`edgecore --version`: "KubeEdge v1.22.0")."""
    if not host.exists(EDGECORE_BIN):
        return None
    try:
        result = await host.run(["edgecore", "--version"], timeout=30)
    except CommandError:
        return None
    words = result.stdout.split()
    return words[-1] if result.ok and words and words[-1].startswith("v") else None


async def run_upgrade(
    settings: AgentSettings, host: Host, state: StateDir, *, target: str, cloud: str | None,
    emit: Callable[[str], None],
) -> ActionReport:  # fmt: skip
    joined = await is_joined(host, state)
    if joined is None:
        raise UserError("this board is not joined: join it first (kedge-agent join)")
    node = joined.node
    current = await running_version(host) or joined.kubeedge_version
    if not Release(target).supported:
        raise UserError(f"kedge does not support KubeEdge {target} (v1.13 to v1.23)")
    if settings.runtime == "docker":
        raise UserError(
            plan("v1.13.0", target, None) or "docker boards cannot be upgraded in place"
        )
    refused = plan(current, target, cloud)
    if refused:
        return ActionReport(command="upgrade", node=node, ok=False, summary=refused,
                            details={"current": current, "target": target, "cloud": cloud})  # fmt: skip
    if version_tuple(current)[:3] == version_tuple(target)[:3]:
        return ActionReport(command="upgrade", node=node, ok=True,
                            summary=f"edgecore already runs {target}: nothing to do")  # fmt: skip
    changes: list[Change] = []
    image = f"{settings.image_repository or 'kubeedge'}/installation-package"
    emit(f"pulling {image}:{target} through {settings.runtime_endpoint}")
    try:
        client = CriClient(settings.runtime_endpoint, timeout=10)
        if await client.image_id(f"{image}:{target}") is None:
            await client.pull(f"{image}:{target}", timeout=KEADM_UPGRADE_TIMEOUT_S)
            changes.append(Change(action="pull", target=f"{image}:{target}"))
    except CriError as exc:
        return ActionReport(command="upgrade", node=node, ok=False, changes=changes,
                            summary=f"cannot pull {image}:{target}: {exc}")  # fmt: skip
    busy = [p.pid for p in host.processes() if p.program == "keadm"]
    if busy:
        return ActionReport(
            command="upgrade",
            node=node,
            ok=False,
            changes=changes,
            summary=f"keadm already runs here (pid {', '.join(map(str, busy))}): "
            "wait for it to end, then upgrade",
        )
    changes += _stale_lock(host)
    argv = ["keadm", "upgrade", "edge", f"--toVersion={target}", f"--image={image}", "--force"]
    emit("$ " + " ".join(argv))
    try:
        result = await host.run(argv, timeout=KEADM_UPGRADE_TIMEOUT_S)
    except CommandError as exc:
        return ActionReport(command="upgrade", node=node, ok=False, changes=changes,
                            summary=f"keadm upgrade edge did not run: {exc}")  # fmt: skip
    for line in (result.stdout + result.stderr).splitlines():
        emit(f"keadm: {line}")
    if not result.ok:
        why = next((ln for ln in result.stderr.splitlines() if ln.startswith("Error: ")), "")
        changes += await _started_again(host, settings)
        return ActionReport(
            command="upgrade", node=node, ok=False, changes=changes,
            summary=f"keadm upgrade edge failed (exit {result.returncode}) {why}".strip(),
            details={"keadm_argv": argv},
        )  # fmt: skip
    changes.append(Change(action="upgrade", target="edgecore", detail=f"{current} → {target}"))
    after = await running_version(host)
    settled = await settle(host, settings.join_settle_s)
    connected = settled and await hub_connected(
        host, joined.cloudcore, max(10.0, 2 * settings.join_settle_s)
    )
    if after != target or not connected:
        what = (
            f"edgecore says it is {after}" if after != target
            else "edgecore does not stay up and connected to cloudhub"
        )  # fmt: skip
        return ActionReport(
            command="upgrade", node=node, ok=False, changes=changes,
            summary=f"keadm upgrade edge finished but {what}; keadm rollback edge returns to {current}",
            details={"keadm_argv": argv},
        )  # fmt: skip
    joined.kubeedge_version, joined.finished_at = target, now()
    state.save_join(joined)
    log.info("upgrade.done", node=node, current=current, target=target)
    return ActionReport(
        command="upgrade", node=node, ok=True, changes=changes,
        summary=f"upgraded edgecore {current} → {target}; it is active and connected to cloudhub",
        details={"keadm_argv": argv, "cloud": cloud},
    )  # fmt: skip

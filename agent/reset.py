"""Undo a join, in the order of the field story's recipe (docs/field-story.md), tolerating
every missing piece.

kedge does what `keadm reset` does on an edge node itself and never runs keadm reset:
keadm decides between cloud and edge by asking the cluster first (util/common.go@v1.13.0,
RunningModuleV2: `if cloudCoreRunning { return types.KubeEdgeCloudRunning }`, with
--kube-config defaulting to /root/.kube/config), so on a board that holds a kubeconfig
for the cluster it deletes the kubeedge namespace: cloudcore for the whole fleet. And
once edgecore is stopped, keadm finds nothing to do on the edge anyway ("None of
KubeEdge components are running in this host, exit")."""

from __future__ import annotations

import structlog

from agent.docker_api import DockerClient
from agent.edgecore_dropin import DROPIN, remove_dropin
from agent.edgecore_run import systemd_runs
from agent.settings import AgentSettings
from kedge.cri import CriClient, CriError
from kedge.errors import CommandError, DockerError, HostError
from kedge.host import Host
from kedge.kubeedge import EDGECORE_UNIT, UNIT_DIRS, Release
from kedge.wire import Change

log = structlog.get_logger(__name__)

# keadm's edge cleanup (reset.go@v1.13.0, cleanDirectories): KubeEdgePath, KubeEdgeLogPath,
# KubeEdgeSocketPath, EdgeRootDir, then "/var/lib/dockershim", "/var/run/kubernetes",
# "/var/lib/cni" for an edge node.
KUBEEDGE_DIRS = (
    "/etc/kubeedge",
    "/var/log/kubeedge",
    "/var/lib/kubeedge",
    "/var/lib/edged",
    "/var/lib/dockershim",
    "/var/run/kubernetes",
    "/var/lib/cni",
)


async def _systemctl(host: Host, *args: str) -> bool:
    if not systemd_runs(host):
        return False
    try:
        return (await host.run(["systemctl", *args], timeout=60)).ok
    except CommandError as exc:
        log.warning("reset.systemctl", args=args, error=str(exc))
        return False


def _is_kubeedge_container(name: str) -> bool:
    return name == "mqtt" or name.startswith("k8s_")


def kubeedge_dirs(kubeedge_version: str) -> tuple[str, ...]:
    """What reset removes for a target release: keadm's own list, and from v1.20 edgecore's
    data directory /var/lib/kubelet (util/reset.go@v1.23.1 CleanDirectories adds
    DefaultRootDir for an edge node — and returns at the first directory that is missing,
    so kedge removes each itself instead of trusting keadm to)."""
    data = Release(kubeedge_version).data_dir
    return KUBEEDGE_DIRS if data in KUBEEDGE_DIRS else (*KUBEEDGE_DIRS, data)


async def reset_board(
    host: Host, docker: DockerClient, settings: AgentSettings, *, dry_run: bool = False
) -> list[Change]:
    """Stop edgecore, remove its unit, its pods (through the CRI at `cri_endpoint` on a
    CRI board, as keadm reset does) and containers, unmount what its pods left mounted,
    and remove the directories of the target release (kubeedge_dirs()). A directory with something
    still mounted below it is kept, never walked into: a change with action "keep" and
    done=False says what and why. Returns what changed (or would change): an already
    clean board yields no changes."""
    changes: list[Change] = []

    def did(action: str, target: str, detail: str = "") -> None:
        changes.append(Change(action=action, target=target, detail=detail, done=not dry_run))

    units = [f"{d}/{EDGECORE_UNIT}" for d in UNIT_DIRS if host.exists(f"{d}/{EDGECORE_UNIT}")]
    wants = [
        f"/etc/systemd/system/{d}/{EDGECORE_UNIT}"
        for d in host.entries("/etc/systemd/system")
        if d.endswith(".wants") and host.exists(f"/etc/systemd/system/{d}/{EDGECORE_UNIT}")
    ]
    if units or wants or host.exists(DROPIN):
        # Without a running systemd the unit is only a file (and edgecore, if it runs,
        # a process: stopped below).
        if systemd_runs(host):
            if not dry_run:
                await _systemctl(host, "stop", EDGECORE_UNIT)
                await _systemctl(host, "disable", EDGECORE_UNIT)
            did("stop", EDGECORE_UNIT, "stopped and disabled")
        for path in units + wants:
            if not dry_run and (host.exists(path)):
                host.path(path).unlink(missing_ok=True)
            did("remove", path)
        changes += remove_dropin(host, dry_run=dry_run)
        if not dry_run:
            await _systemctl(host, "daemon-reload")

    for proc in host.processes():
        if proc.program == "edgecore":
            if not dry_run:
                host.terminate(proc.pid)
            did("stop", f"edgecore process {proc.pid}")

    try:
        containers = await docker.containers()
    except DockerError as exc:
        # Only a docker board's join leaves containers there; elsewhere docker is optional.
        if settings.runtime == "docker":
            log.warning("reset.docker", error=str(exc))
        containers = []
    for c in containers:
        if _is_kubeedge_container(c.name):
            if not dry_run:
                await docker.remove_container(c.id)
            did("remove", f"container {c.name}", c.image)

    if settings.runtime != "docker":
        changes += await _remove_pods(settings.runtime_endpoint, dry_run=dry_run)
    for d in kubeedge_dirs(settings.kubeedge_version):
        if host.exists(d):
            changes += await _remove_dir(host, d, dry_run=dry_run)
    log.info("reset.done", changes=len(changes))
    return changes


async def _remove_pods(endpoint: str, *, dry_run: bool) -> list[Change]:
    """Every pod sandbox on the runtime: only a kubelet (here edgecore's) makes them."""
    cri = CriClient(endpoint)
    try:
        pods = await cri.pods()
    except CriError as exc:
        log.warning("reset.cri", error=str(exc))
        return []
    changes = []
    for pod in pods:
        if not dry_run:
            try:
                await cri.remove_pod(pod.id)
            except CriError as exc:
                log.warning("reset.pod", pod=pod.id, error=str(exc))
                continue
        changes.append(
            Change(
                action="remove",
                target=f"pod {pod.namespace}/{pod.name}",
                detail=f"sandbox {pod.id[:12]}",
                done=not dry_run,
            )
        )
    return changes


async def _remove_dir(host: Host, d: str, *, dry_run: bool) -> list[Change]:
    """Unmount what is mounted below `d` (pods' volumes: a tmpfs, a bind mount, NFS or a
    CSI volume — never forced, never lazily), then remove it; keep it, untouched, when
    something stays mounted: deleting through a mount deletes someone's data."""
    changes = []
    stuck = []
    for mount in host.mounts_below(d):
        why = None if dry_run else await host.unmount(mount)
        if why is None:
            changes.append(Change(action="unmount", target=mount, done=not dry_run))
        else:
            stuck.append(f"{mount} ({why})")
    if stuck:
        changes.append(
            Change(
                action="keep",
                target=d,
                done=False,
                detail=f"still mounted below it: {', '.join(stuck)}; unmount "
                "them (or stop what uses them), then reset again",
            )
        )
        return changes
    if not dry_run:
        try:
            host.remove_tree(d)
        except HostError as exc:
            changes.append(Change(action="keep", target=d, done=False, detail=str(exc)))
            return changes
    changes.append(Change(action="remove", target=d, done=not dry_run))
    return changes


def kept(changes: list[Change]) -> list[Change]:
    """What reset refused to remove."""
    return [c for c in changes if c.action == "keep"]

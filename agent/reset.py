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

import shutil

import structlog

from agent.docker_api import DockerClient
from agent.edgecore_dropin import DROPIN, remove_dropin
from kedge.errors import CommandError, DockerError
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
    if host.which("systemctl") is None:
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


async def reset_board(host: Host, docker: DockerClient, *, dry_run: bool = False,
                      dirs: tuple[str, ...] = KUBEEDGE_DIRS) -> list[Change]:  # fmt: skip
    """Stop edgecore, remove its unit, containers and directories (`dirs`: see
    kubeedge_dirs()). Returns what changed (or would change): an already clean board
    yields no changes."""
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
        log.warning("reset.docker", error=str(exc))
        containers = []
    for c in containers:
        if _is_kubeedge_container(c.name):
            if not dry_run:
                await docker.remove_container(c.id)
            did("remove", f"container {c.name}", c.image)

    for d in dirs:
        if host.exists(d):
            if not dry_run:
                shutil.rmtree(host.path(d), ignore_errors=True)
            did("remove", d)
    log.info("reset.done", changes=len(changes))
    return changes

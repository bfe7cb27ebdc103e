"""What `keadm init` needs to succeed on this cluster, decided before running it: the
advertise addresses, the Kubernetes version range, keadm's architecture, and the
tolerations a tainted single master needs (docs/kubeedge-1.13.md, keadm init)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cloud_api.kube import Node
from kedge.kubeedge import ARCH_BY_ELF_MACHINE, ARCH_BY_MACHINE, refuse_advised
from kedge.names import version_tuple

# KubeEdge minor -> the Kubernetes minors it works with: up to v1.15 the matrix's exact
# and "+" cells, from v1.16 the exact ones (docs/kubeedge-versions.md names each README).
SUPPORTED_K8S: Mapping[tuple[int, int], tuple[int, int]] = {
    (1, 12): (20, 22),
    (1, 13): (20, 23),
    (1, 14): (20, 24),
    (1, 15): (20, 26),
    (1, 16): (25, 27),
    (1, 17): (26, 28),
    (1, 18): (27, 29),
    (1, 19): (27, 29),
    (1, 20): (28, 30),
    (1, 21): (28, 30),
    (1, 22): (29, 31),
    (1, 23): (30, 32),
}
MASTER_TAINTS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")
# manifests/charts/cloudcore/values.yaml@v1.13.0, cloudCore.resources.requests: the
# scheduler places cloudcore's pod only on a node with this much allocatable.
CLOUDCORE_REQUESTS = {"cpu": "100m", "memory": "512Mi"}


class PlanError(ValueError):
    """keadm init would fail: the message says why and what to do."""

    def __init__(self, message: str, details: dict[str, object] | None = None) -> None:
        super().__init__(message)
        self.details = details or {}


@dataclass(frozen=True)
class Interface:
    name: str
    address: str


def check_advertise(addresses: Sequence[str], interfaces: Sequence[Interface]) -> dict[str, str]:
    """Each address must be bound here and not loopback: boards must reach it. Returns
    address → interface name."""
    where: dict[str, str] = {}

    def reachable(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return not (ip.is_loopback or ip.is_link_local)

    host_addrs = sorted(
        {i.address for i in interfaces if reachable(ipaddress.ip_address(i.address))}
    )
    for a in addresses:
        try:
            ip = ipaddress.ip_address(a)
        except ValueError as exc:
            raise PlanError(f"advertise address {a!r} is not an IP address") from exc
        if not reachable(ip):
            kind = "loopback" if ip.is_loopback else "link-local"
            raise PlanError(f"advertise address {a} is {kind}: edge boards cannot reach it",
                            {"host_addresses": host_addrs})  # fmt: skip
        match = next((i.name for i in interfaces if ipaddress.ip_address(i.address) == ip), None)
        if match is None:
            raise PlanError(
                f"advertise address {a} is not on any interface of this host (a NAT address of a VM "
                "cannot be reached from the boards: use a bridged interface)",
                {"host_addresses": host_addrs},
            )
        where[a] = match
    return where


def check_k8s(kubeedge_version: str, k8s: tuple[int, int], *, allow_unsupported: bool) -> None:
    major, minor, _ = version_tuple(kubeedge_version)
    low_high = SUPPORTED_K8S.get((major, minor))
    if low_high is None or allow_unsupported:
        return
    low, high = low_high
    if not (k8s[0] == 1 and low <= k8s[1] <= high):
        raise PlanError(
            f"Kubernetes 1.{k8s[1]} is outside KubeEdge {kubeedge_version}'s supported range 1.{low} to 1.{high}; "
            "pick a matching KubeEdge version or pass allow_unsupported_kubernetes",
            {"kubernetes": f"1.{k8s[1]}", "supported": f"1.{low}-1.{high}"},
        )


def check_keadm_arch(elf_machine: int | None, machine: str) -> None:
    if elf_machine is None:
        return  # a script (the simulator) or unreadable: keadm itself will say
    keadm_arch, host_arch = ARCH_BY_ELF_MACHINE.get(elf_machine), ARCH_BY_MACHINE.get(machine)
    if keadm_arch != host_arch:
        raise PlanError(f"keadm is built for {keadm_arch or hex(elf_machine)} but this host is {host_arch or machine}",
                        {"keadm": keadm_arch, "host": host_arch})  # fmt: skip


def tolerations_needed(nodes: Sequence[Node]) -> list[dict[str, str]]:
    """Tolerations for the master taints, when no untainted non-edge node can take cloudcore."""
    candidates = [n for n in nodes if not n.edge]
    if any(not any(t.effect == "NoSchedule" for t in n.taints) for n in candidates):
        return []
    keys = sorted(
        {
            t.key
            for n in candidates
            for t in n.taints
            if t.key in MASTER_TAINTS and t.effect == "NoSchedule"
        }
    )
    return [{"key": k, "operator": "Exists", "effect": "NoSchedule"} for k in keys]


def init_argv(addresses: Sequence[str], kubeconfig: str, kubeedge_version: str,
              tolerations: Sequence[dict[str, str]]) -> list[str]:  # fmt: skip
    """keadm init's argv: the version through --profile for v1.13 (keadm 1.13.0 ignores
    --kubeedge-version), through --kubeedge-version after it (the flag every later
    cloud/init.go reads into initOpts.KubeEdgeVersion); one key per --set (keadm splits
    values at '=' and ',')."""
    version = (["--profile", f"version={kubeedge_version}"] if version_tuple(kubeedge_version)[:2] <= (1, 13)
               else [f"--kubeedge-version={kubeedge_version}"])  # fmt: skip
    argv = ["keadm", "init", f"--advertise-address={','.join(addresses)}", f"--kube-config={kubeconfig}",
            *version]  # fmt: skip
    for i, t in enumerate(tolerations):
        for field in ("key", "operator", "effect"):
            argv += ["--set", f"cloudCore.tolerations[{i}].{field}={t[field]}"]
    return argv


def upgrade_argv(addresses: Sequence[str], kubeconfig: str, kubeedge_version: str,
                 tolerations: Sequence[dict[str, str]]) -> list[str]:  # fmt: skip
    """`keadm upgrade cloud` (cloud/upgrade.go, from v1.16, where `keadm init` refuses an
    installed release: "the cloudcore release already exists, and you can upgrade the
    cloudcore using the `keadm upgrade`"): the last release's values kept, the version
    and addresses set; --force because kedge waits for the Deployment itself."""
    argv = ["keadm", "upgrade", "cloud", f"--advertise-address={','.join(addresses)}",
            f"--kube-config={kubeconfig}", f"--kubeedge-version={kubeedge_version}",
            "--reuse-values", "--force"]  # fmt: skip
    for i, t in enumerate(tolerations):
        for field in ("key", "operator", "effect"):
            argv += ["--set", f"cloudCore.tolerations[{i}].{field}={t[field]}"]
    return argv


def uses_keadm_upgrade(kubeedge_version: str) -> bool:
    return version_tuple(kubeedge_version)[:2] >= (1, 16)


def check_release(version: str) -> None:
    """A release kedge never installs (a security advisory), refused before anything else
    is asked: no cluster makes it acceptable."""
    if (advised := refuse_advised(version)) is not None:
        raise PlanError(advised)


def check_upgrade(current: str | None, target: str, nodes: Sequence[Node]) -> None:
    """The cloud goes first and one minor release at a time, and no edge node may end up
    newer than cloudcore or more than one minor release behind it."""
    to = version_tuple(target)[:2]
    if current is not None:
        now = version_tuple(current)[:2]
        if to < now:
            raise PlanError(f"cloudcore runs {current}: {target} would be a downgrade, which "
                            "kedge does not do (keadm rollback is the tool for it)")  # fmt: skip
        if to[1] - now[1] > 1:
            raise PlanError(
                f"cloudcore {current} → {target} skips minor releases; KubeEdge upgrades one "
                f"minor release at a time: install the newest v1.{now[1] + 1}.x first",
                {"current": current, "target": target},
            )
    behind = {n.name: n.kubeedge_version for n in nodes
              if n.edge and n.kubeedge_version and to[1] - version_tuple(n.kubeedge_version)[1] > 1}  # fmt: skip
    ahead = {n.name: n.kubeedge_version for n in nodes
             if n.edge and n.kubeedge_version and version_tuple(n.kubeedge_version)[:2] > to}  # fmt: skip
    if behind:
        raise PlanError(
            f"these edge nodes would be more than one minor release behind cloudcore {target}: "
            + ", ".join(f"{k} ({v})" for k, v in sorted(behind.items()))
            + "; upgrade them first (kedge-agent upgrade), one minor release at a time",
            {"behind": behind},
        )
    if ahead:
        raise PlanError(
            f"these edge nodes run a newer release than {target}: "
            + ", ".join(f"{k} ({v})" for k, v in sorted(ahead.items())),
            {"ahead": ahead},
        )


def check_room(nodes: Sequence[Node]) -> None:
    """Some node cloudcore may run on (not an edge node, no NoSchedule taint kedge does
    not tolerate) must have the allocatable CPU and memory the chart requests; else the
    pod stays Pending ("0/1 nodes are available: 1 Insufficient memory.") and keadm
    reports only a timeout."""
    candidates = [
        n for n in nodes
        if not n.edge and all(t.key in MASTER_TAINTS for t in n.taints if t.effect == "NoSchedule")
    ]  # fmt: skip
    if not candidates or any(n.can_hold(CLOUDCORE_REQUESTS) for n in candidates):
        return
    have = {n.name: dict(n.allocatable) for n in candidates}
    shown = "; ".join(
        f"{name}: {a.get('cpu', '?')} CPU, {a.get('memory', '?')} memory"
        for name, a in have.items()
    )
    raise PlanError(
        "no node has room for cloudcore's pod: the chart requests "
        f"{CLOUDCORE_REQUESTS['cpu']} CPU and {CLOUDCORE_REQUESTS['memory']} memory, and the "
        f"nodes it may run on have allocatable {shown}. Free memory on the master (or give "
        "it more), or add a node",
        {"requests": CLOUDCORE_REQUESTS, "allocatable": have},
    )

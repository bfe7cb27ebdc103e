"""conflicts: another Kubernetes node agent (k3s, kubeadm's kubelet) on the board.

edgecore refuses to start beside a process named kubelet, and misses k3s (whose
kubelet lives inside the k3s binary) entirely; then pods fail in odd ways. This is
the field story's "ultimate bug" (docs/field-story.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from agent.checks.context import CheckContext
from agent.checks.registry import Outcome, check, failed, passed, warned
from kedge.errors import HostError
from kedge.host import Host
from kedge.kubeedge import KUBELET_PORT, UNIT_DIRS

K3S_PATHS = ("/etc/rancher/k3s", "/var/lib/rancher/k3s")
K3S_UNITS = ("k3s.service", "k3s-agent.service")
KUBELET_FILES = ("/etc/kubernetes/kubelet.conf", "/var/lib/kubelet/config.yaml")
CGROUP_ROOT = "/sys/fs/cgroup"
KUBEPODS = ("kubepods", "kubepods.slice")
MAX_CGROUPS_WALKED = 4096


@dataclass(frozen=True)
class Finding:
    owner: str  # "k3s", "kubelet", "cgroups", "port"
    what: str

    def as_dict(self) -> dict[str, str]:
        return {"owner": self.owner, "what": self.what}


def unit_files(host: Host, unit: str) -> list[str]:
    return [f"{d}/{unit}" for d in UNIT_DIRS if host.exists(f"{d}/{unit}")]


def unit_enabled_links(host: Host, unit: str) -> list[str]:
    links = []
    for name in host.entries("/etc/systemd/system"):
        if name.endswith(".wants") and unit in host.entries(f"/etc/systemd/system/{name}"):
            links.append(f"/etc/systemd/system/{name}/{unit}")
    return links


async def unit_active(ctx: CheckContext, unit: str) -> bool:
    """Whether systemd reports the unit active; False when systemd cannot tell."""
    return await ctx.host.unit_state(unit, timeout=5) in ("active", "activating", "reloading")


async def _k3s(ctx: CheckContext) -> list[Finding]:
    found = []
    binary = ctx.host.which("k3s")
    if binary:
        found.append(Finding("k3s", f"binary {binary}"))
    found += [Finding("k3s", f"directory {p}") for p in K3S_PATHS if ctx.host.exists(p)]
    for unit in K3S_UNITS:
        found += [Finding("k3s", f"unit {u}") for u in unit_files(ctx.host, unit)]
        if await unit_active(ctx, unit):
            found.append(Finding("k3s", f"{unit} is active"))
    for p in await ctx.processes():
        if p.program == "k3s" or p.name.startswith("k3s-"):
            found.append(Finding("k3s", f"process {p.name} (pid {p.pid})"))
    return found


async def _kubelet(ctx: CheckContext) -> list[Finding]:
    found = [
        Finding("kubelet", f"process {p.program} (pid {p.pid})")
        for p in await ctx.find_processes("kubelet", "kube-proxy")
    ]
    found += [
        Finding("kubelet", f"enabled by {link}")
        for link in unit_enabled_links(ctx.host, "kubelet.service")
    ]
    if await unit_active(ctx, "kubelet.service"):
        found.append(Finding("kubelet", "kubelet.service is active"))
    found += [Finding("kubelet", f"file {f}") for f in KUBELET_FILES if ctx.host.exists(f)]
    return found


def _kubepods(ctx: CheckContext) -> list[str]:
    found = [f"{CGROUP_ROOT}/{n}" for n in KUBEPODS if ctx.host.exists(f"{CGROUP_ROOT}/{n}")]
    for controller in ctx.host.entries(CGROUP_ROOT):  # cgroup v1: one tree per controller
        base = f"{CGROUP_ROOT}/{controller}"
        found += [f"{base}/{n}" for n in KUBEPODS if ctx.host.exists(f"{base}/{n}")]
    return found


def _held(host: Host, tree: str) -> list[int]:
    """The processes in a cgroup tree (bounded: a kubepods tree is a few levels deep)."""
    pids: list[int] = []
    todo, seen = [tree], 0
    while todo and seen < MAX_CGROUPS_WALKED:
        d = todo.pop()
        seen += 1
        for line in (host.read_text(f"{d}/cgroup.procs") or "").split():
            if line.isdigit():
                pids.append(int(line))
        todo += [f"{d}/{e}" for e in host.entries(d) if host.path(f"{d}/{e}").is_dir()]
    return sorted(set(pids))


async def _cgroups(ctx: CheckContext) -> tuple[list[Finding], list[str]]:
    """kubepods cgroups that still hold processes while no edgecore runs (pods of another
    agent, a conflict), and empty ones. Empty ones are left by any kubelet that ran on
    this boot — k3s, kubeadm's, or edgecore's own before a reset — until a reboot, and
    edgecore's kubelet adopts them: no conflict."""
    held, empty = [], []
    edgecore = await ctx.find_processes("edgecore")
    for tree in _kubepods(ctx):
        pids = _held(ctx.host, tree)
        if pids and not edgecore:
            shown = ", ".join(map(str, pids[:5])) + (" …" if len(pids) > 5 else "")
            held.append(Finding("cgroups", f"cgroup {tree} holds processes (pid {shown})"))
        elif not pids:
            empty.append(tree)
    return held, empty


def _port(ctx: CheckContext) -> list[Finding]:
    try:
        listeners = ctx.host.listeners()
    except HostError:
        return []
    return [
        Finding(
            "port",
            f"port {KUBELET_PORT} taken by {lst.process or '?'} (pid {lst.pid}) on {lst.address}",
        )
        for lst in listeners
        if lst.port == KUBELET_PORT
    ]


_REMEDIES = {
    "k3s": "Remove k3s: /usr/local/bin/k3s-uninstall.sh (server) or "
    "/usr/local/bin/k3s-agent-uninstall.sh (agent); to only stop it: "
    "systemctl disable --now k3s k3s-agent.",
    "kubelet": "Remove the kubeadm node: kubeadm reset -f && systemctl disable --now kubelet, "
    "then delete /etc/kubernetes and /var/lib/kubelet if they are not needed.",
    "cgroups": "Pods of a kubelet or k3s still run in the kubepods cgroups: remove that "
    "agent (k3s-killall.sh stops k3s's pods), then reboot.",
    "port": f"Stop the process listening on port {KUBELET_PORT}; edgecore's kubelet needs it.",
}


@check(
    "conflicts",
    "No other Kubernetes agent",
    "No k3s, kubelet or kube-proxy (installed, running or left behind) competes with edgecore.",
)
async def conflicts(ctx: CheckContext) -> Outcome:
    k3s, kubelet = await asyncio.gather(_k3s(ctx), _kubelet(ctx))
    held, empty = await _cgroups(ctx)
    findings = k3s + kubelet + held + _port(ctx)
    if not findings:
        if empty:
            return warned(
                f"empty kubepods cgroups left by a kubelet that ran on this boot: {', '.join(empty)}",
                "Nothing to do: edgecore's kubelet adopts them; a reboot removes them.",
                findings=[],
                empty_cgroups=empty,
            )
        return passed("no k3s, kubelet or kube-proxy found", findings=[])
    owners = list(dict.fromkeys(f.owner for f in findings))
    remedy = "\n".join(_REMEDIES[o] for o in owners)
    if {"k3s", "kubelet"} & set(owners):
        remedy += "\nOr `kedge-agent fix --only conflicts --force-remove-conflicts` stops and disables their units."
    return failed(
        "; ".join(f.what for f in findings),
        remedy,
        findings=[f.as_dict() for f in findings],
    )

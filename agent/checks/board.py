"""leftovers, resources, kmsg, node-name, ports, pod-dns, edgecore: the board is clean, big
enough, gives edgecore what it opens, and is named right."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from agent import edgecore_run
from agent.checks.context import CheckContext
from agent.checks.registry import Outcome, check, failed, not_used, passed, skipped, warned
from agent.diagnose import recognise
from kedge.kubeedge import (
    EDGECORE_PORT,
    EDGECORE_UNIT,
    ETC_DIR,
    STATE_DIRS,
    UNIT_DIRS,
    Release,
)
from kedge.names import is_dns1123_subdomain, suggest_dns1123

MB = 1024 * 1024
# Who holds the ports on a joined board: edgecore, and keadm's MQTT container
# (mosquitto, published by docker-proxy).
JOINED_OWNERS = frozenset({"edgecore", "mosquitto", "docker-proxy"})
RESET_REMEDY = (
    "Run `kedge-agent reset` to clean up the earlier join (or by hand: systemctl disable --now "
    "edgecore; rm -f /etc/systemd/system/edgecore.service; rm -rf /etc/kubeedge "
    "/var/lib/kubeedge /var/lib/edged)."
)


@check(
    "leftovers",
    "No earlier join left behind",
    "No edgecore running, and nothing left in /etc/kubeedge, /var/lib/kubeedge, /var/lib/edged or systemd.",
)
async def leftovers(ctx: CheckContext) -> Outcome:
    blocking: list[str] = []
    stale: list[str] = []
    blocking += [f"edgecore running (pid {p.pid})" for p in await ctx.find_processes("edgecore")]
    entries = ctx.host.entries(ETC_DIR)
    if entries:
        blocking.append(
            f"{ETC_DIR} is not empty ({', '.join(entries[:4])}{'…' if len(entries) > 4 else ''})"
        )
    data_dir = Release(ctx.settings.kubeedge_version).data_dir  # /var/lib/kubelet from v1.20
    state_dirs = STATE_DIRS if data_dir in STATE_DIRS else (*STATE_DIRS, data_dir)
    stale += [f"{d} is not empty" for d in state_dirs if ctx.host.entries(d)]
    stale += [
        f"stale unit {d}/{EDGECORE_UNIT}"
        for d in UNIT_DIRS
        if ctx.host.exists(f"{d}/{EDGECORE_UNIT}")
    ]
    details: dict[str, Any] = {"blocking": blocking, "stale": stale}
    joined = ctx.joined()
    if joined is not None:
        since = f" since {joined.finished_at:%Y-%m-%d %H:%M}Z" if joined.finished_at else ""
        details["joined"] = joined.node
        return passed(f"joined as {joined.node} to {joined.cloudcore}{since}: what is in "
                      f"{ETC_DIR} and the running edgecore belong to that join", **details)  # fmt: skip
    if blocking:
        return failed(
            "; ".join(blocking + stale) + " (keadm join refuses to start)", RESET_REMEDY, **details
        )
    if stale:
        return warned("; ".join(stale), RESET_REMEDY, **details)
    return passed("no trace of an earlier join", **details)


def _limit(kind: str, measured: str, limit: str) -> str:
    return f"{kind} {measured} (limit {limit})"


@check(
    "resources",
    "CPU, memory, disk and PIDs",
    "The board has the CPUs, memory, disk and PID headroom keadm debug check asks for.",
)
async def resources(ctx: CheckContext) -> Outcome:
    t = ctx.settings.thresholds
    host = ctx.host
    busy = await host.cpu_busy_percent(t.cpu_sample_s)
    cpus, mem = host.cpu_count(), host.memory()
    disk = await asyncio.to_thread(host.disk_usage, host.path("/"))
    pid_max_text = host.read_text("/proc/sys/kernel/pid_max") or "32768"
    pid_max = int(pid_max_text.strip() or 32768)
    procs = host.process_count()
    headroom = 100.0 * (1 - procs / pid_max)
    details: dict[str, Any] = {
        "cpus": cpus,
        "cpu_used_pct": round(busy, 1),
        "mem_total_mb": mem.total // MB,
        "mem_available_mb": mem.available // MB,
        "mem_used_pct": mem.percent,
        "disk_total_mb": disk.total // MB,
        "disk_free_mb": disk.free // MB,
        "disk_used_pct": disk.percent,
        "processes": procs,
        "pid_max": pid_max,
        "pid_headroom_pct": round(headroom, 1),
    }
    fails, warns = [], []
    if cpus < t.min_cpus:
        fails.append(_limit("CPUs", str(cpus), f"≥ {t.min_cpus}"))
    if mem.total // MB < t.min_mem_total_mb:
        fails.append(_limit("memory", f"{mem.total // MB} MB", f"≥ {t.min_mem_total_mb} MB"))
    if mem.available // MB < t.min_mem_available_mb:
        fails.append(
            _limit(
                "available memory", f"{mem.available // MB} MB", f"≥ {t.min_mem_available_mb} MB"
            )
        )
    if disk.total // MB < t.min_disk_total_mb:
        fails.append(_limit("disk", f"{disk.total // MB} MB", f"≥ {t.min_disk_total_mb} MB"))
    if disk.free // MB < t.min_disk_free_mb:
        fails.append(_limit("free disk", f"{disk.free // MB} MB", f"≥ {t.min_disk_free_mb} MB"))
    if 100.0 - disk.percent < t.min_disk_free_pct:
        fails.append(
            _limit("free disk", f"{100.0 - disk.percent:.0f} %", f"≥ {t.min_disk_free_pct:g} %")
            + " (edgecore's kubelet evicts pods and taints the Node DiskPressure below 15 %)"
        )
    if headroom < t.min_pid_headroom_pct:
        fails.append(_limit("PID headroom", f"{headroom:.1f} %", f"≥ {t.min_pid_headroom_pct:g} %"))
    if busy > t.max_cpu_used_pct:
        warns.append(_limit("CPU busy", f"{busy:.0f} %", f"≤ {t.max_cpu_used_pct:g} %"))
    if mem.percent > t.max_mem_used_pct:
        warns.append(_limit("memory used", f"{mem.percent:.0f} %", f"≤ {t.max_mem_used_pct:g} %"))
    if disk.percent > t.max_disk_used_pct:
        warns.append(
            _limit("disk used", f"{disk.percent:.0f} %", f"≤ {t.max_disk_used_pct:g} %")
            + " (edgecore's image GC starts at 85 % used and deletes the images kedge pulled)"
        )
    summary = (
        f"{cpus} CPUs ({busy:.0f} % busy), {mem.available // MB} of {mem.total // MB} MB memory "
        f"available, {disk.free // MB} MB disk free, {headroom:.0f} % PID headroom"
    )
    remedy = (
        "Free memory or disk (docker system prune, journalctl --vacuum-size=100M), stop "
        "what keeps the board busy, or lower the limits under [thresholds] in /etc/kedge/agent.toml."
    )
    if fails:
        return failed("; ".join(fails), remedy, **details)
    if warns:
        return warned("; ".join(warns), remedy, **details)
    return passed(summary, **details)


KMSG = "/dev/kmsg"
KMSG_ERROR = "failed to create kubelet: open /dev/kmsg: no such file or directory"


@check(
    "kmsg",
    "Kernel log device",
    "/dev/kmsg is there: edgecore's kubelet opens it as it starts and exits without it.",
)
async def kmsg(ctx: CheckContext) -> Outcome:
    if ctx.host.exists(KMSG):
        return passed(f"{KMSG} is there")
    # keadm join still reports success (seen with v1.23.1 in a container booted
    # without it): edgecore's kubelet stops at its OOM watcher, over and over.
    return failed(
        f'{KMSG} is missing: edgecore would exit as it starts ("{KMSG_ERROR}") after keadm '
        "reported success",
        f"The board runs in a container that was not given {KMSG}: bind it in "
        f"(systemd-nspawn --bind={KMSG}; docker run --device {KMSG}; LXC: "
        "lxc.mount.entry = /dev/kmsg dev/kmsg none bind,optional,create=file). "
        "A board's own kernel has it unless built without CONFIG_PRINTK.",
        path=KMSG,
    )


@check(
    "node-name",
    "Node name",
    "The node name is a valid DNS-1123 subdomain (keadm silently uses default-edge-node otherwise).",
)
async def node_name(ctx: CheckContext) -> Outcome:
    name = ctx.node_name()
    source = "node_name setting" if ctx.settings.node_name else "hostname"
    details = {"node_name": name, "source": source}
    if not is_dns1123_subdomain(name):
        suggestion = suggest_dns1123(name)
        return failed(
            f"{name!r} (from the {source}) is not a valid node name: keadm would silently "
            "register the board as default-edge-node",
            f'Set node_name = "{suggestion}" in /etc/kedge/agent.toml (lower-case letters, '
            "digits, '-' and '.', at most 253 characters, starting and ending alphanumeric).",
            **details,
        )
    return passed(f"{name} (from the {source})", **details)


@check(
    "ports",
    "edgecore and MQTT ports free",
    "Ports 10350 (edgecore) and the MQTT broker's are free: 1883 and 9001 up to v1.15 (the "
    "container keadm starts), 1883 from v1.16 (the cloud's hostNetwork mosquitto pod).",
)
async def ports(ctx: CheckContext) -> Outcome:
    wanted = {EDGECORE_PORT: "edgecore", **Release(ctx.settings.kubeedge_version).mqtt_ports()}
    listeners = await asyncio.to_thread(ctx.host.listeners)
    if ctx.joined() is not None:  # edgecore and keadm's broker hold them now
        listeners = [lst for lst in listeners if lst.process not in JOINED_OWNERS]
    taken = [
        f"{lst.port} ({wanted[lst.port]}) is taken by {lst.process or 'an unknown process'}"
        f"{f' (pid {lst.pid})' if lst.pid else ''} on {lst.address}"
        for lst in listeners
        if lst.port in wanted
    ]
    details = {"ports": sorted(wanted), "taken": taken}
    if taken:
        return failed(
            "; ".join(dict.fromkeys(taken)),
            "Stop the process holding the port (the MQTT broker KubeEdge brings listens on "
            "every address). A system mosquitto on 1883: systemctl disable --now mosquitto "
            "(KubeEdge brings its own broker; beside it, the cloud's mosquitto pod "
            "crash-loops). An edgecore left from an earlier join: kedge-agent reset.",
            **details,
        )
    shown = ", ".join(str(p) for p in sorted(wanted))
    return passed(f"ports {shown} are free", **details)


# edgecore's kubelet hands pods the host's resolver file (tailoredKubeletConfig.resolvConf,
# default /etc/resolv.conf: default_kubelet_configuration.go@v1.13.0 and @v1.23.1);
# systemd-resolved keeps the real servers in this one.
RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"


def _nameservers(text: str) -> list[str]:
    return [
        words[1]
        for words in (line.split() for line in text.splitlines())
        if len(words) > 1 and words[0] == "nameserver"
    ]


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


@check(
    "pod-dns",
    "DNS for pods",
    "The resolver file edgecore hands its pods names a server a pod can reach: not only "
    "a loopback stub such as systemd-resolved's 127.0.0.53.",
)
async def pod_dns(ctx: CheckContext) -> Outcome:
    text = ctx.host.read_text("/etc/resolv.conf")
    if text is None:
        return skipped("no /etc/resolv.conf on this board to read")
    servers = _nameservers(text)
    details: dict[str, Any] = {"nameservers": servers}
    if servers and not all(_loopback(s) for s in servers):
        return passed(f"pods get nameserver {', '.join(servers)}", **details)
    upstream = _nameservers(ctx.host.read_text(RESOLVED_UPSTREAM) or "")
    details["upstream"] = upstream
    where = (
        f"{RESOLVED_UPSTREAM} (it names {', '.join(upstream)})"
        if upstream
        else "a resolver file naming a server on the network"
    )
    said = (
        f"/etc/resolv.conf names only {', '.join(servers)}, a loopback stub a pod cannot reach"
        if servers
        else "/etc/resolv.conf names no nameserver"
    )
    return warned(
        f"{said}: pods on this board will not resolve names",
        f"After the join set modules.edged.tailoredKubeletConfig.resolvConf to {where} in "
        "/etc/kubeedge/config/edgecore.yaml and restart edgecore.",
        **details,
    )


@check(
    "edgecore",
    "edgecore runs",
    "On a joined board edgecore runs (through systemd, or in the background where keadm "
    "started it so): without it the Node goes NotReady, then Unknown.",
)
async def edgecore(ctx: CheckContext) -> Outcome:
    joined = ctx.joined()
    if joined is None:
        return not_used("not joined: nothing is meant to run edgecore yet")
    how = (
        "systemd's edgecore.service"
        if edgecore_run.by_systemd(ctx.host)
        else "a background process"
    )
    details = {"pids": edgecore_run.pids(ctx.host), "by": how}
    if await edgecore_run.is_active(ctx.host):
        return passed(f"edgecore runs ({how}) for node {joined.node}", **details)
    summary = (
        f"joined to {joined.cloudcore} as {joined.node}, but edgecore does not run ({how}): "
        "the Node goes NotReady, then Unknown"
    )
    last = await edgecore_run.last_words(ctx.host, ctx.settings.kubeedge_version)
    if causes := recognise(last):
        # Starting it again would end the same way: say why it stopped, and its remedy.
        details["causes"] = [c.id for c in causes]
        return failed(
            f"{summary}; its log says {causes[0].summary}",
            " ".join(c.remedy for c in causes),
            **details,
        )
    return failed(
        summary,
        "kedge-agent fix --only edgecore starts it again (the daemon's fix command does the "
        "same); if it exits again, its log says why (journalctl -u edgecore, or "
        "/var/log/kubeedge/edgecore.log without systemd).",
        **details,
    )

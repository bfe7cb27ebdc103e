"""Whether edgecore runs, whichever way keadm started it.

keadm starts edgecore through systemd only when its own test for systemd passes
(`file /sbin/init` exits 0: util HasSystemd@v1.13.0 and @v1.23.1); otherwise it runs
`edgecore > LOG 2>&1 &` through bash and edgecore is nobody's unit. A board can have
systemctl installed while systemd does not run (a container, a minimal image, another
init): systemctl then answers "inactive" for a unit systemd never loaded, which says
nothing about edgecore. So systemd is asked only when it runs (sd_booted(3):
/run/systemd/system exists) and has edgecore's unit; otherwise the process table is
the truth."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass

from kedge.errors import CommandError
from kedge.host import Host
from kedge.kubeedge import EDGECORE_BIN, EDGECORE_UNIT, UNIT_DIRS, Release
from kedge.wire import Change, EdgecoreState

# What keadm prints after starting edgecore in the background (edge/join.go runEdgeCore):
# the systemd path names journalctl instead of a file.
BACKGROUND_TIP = "KubeEdge edgecore is running, For logs visit: /"

SYSTEMD_RUNNING = "/run/systemd/system"


@dataclass(frozen=True)
class Generation:
    """What changes when edgecore is restarted: systemd's count, or the pids."""

    marker: str


def systemd_runs(host: Host) -> bool:
    return host.exists(SYSTEMD_RUNNING) and host.which("systemctl") is not None


def has_unit(host: Host) -> bool:
    return any(host.exists(f"{d}/{EDGECORE_UNIT}") for d in UNIT_DIRS)


def by_systemd(host: Host) -> bool:
    """Whether systemd runs edgecore here (else keadm's background process, if any)."""
    return systemd_runs(host) and has_unit(host)


def pids(host: Host) -> list[int]:
    return sorted(p.pid for p in host.processes() if p.program == "edgecore")


async def is_active(host: Host) -> bool:
    if by_systemd(host):
        return await host.unit_state(EDGECORE_UNIT, timeout=10) == "active"
    return bool(pids(host))


async def generation(host: Host) -> Generation:
    """Equal across two looks only if edgecore was not restarted in between. With
    Restart=always a crash loop reads "active" between crashes; the count tells."""
    if by_systemd(host):
        props = await host.unit_properties(EDGECORE_UNIT, "NRestarts", timeout=10)
        return Generation(f"restarts={(props or {}).get('NRestarts')}")
    return Generation(f"pids={pids(host)}")


async def state(host: Host, previous_restarts: int | None = None) -> EdgecoreState:
    """edgecore's state for a health report. `previous_restarts`: systemd's count at the
    last look, to tell a crash loop from a steady "active"."""
    if by_systemd(host):
        props = await host.unit_properties(EDGECORE_UNIT, "ActiveState", "NRestarts", timeout=5)
        if props is None:
            return EdgecoreState(active=None, state="systemd does not answer")
        word = props.get("ActiveState") or "unknown"
        count = props.get("NRestarts", "")
        restarts = int(count) if count.isdigit() else None
        if restarts is not None and previous_restarts is not None and restarts > previous_restarts:
            return EdgecoreState(active=False, state="restarting", restarts=restarts)
        return EdgecoreState(active=word == "active", state=word, restarts=restarts)
    if pids(host):
        return EdgecoreState(active=True, state="running (keadm started it; not a systemd unit)")
    if has_unit(host) or host.exists(EDGECORE_BIN):
        return EdgecoreState(active=False, state="not running")
    return EdgecoreState(active=False, state="not installed")


async def start_as_keadm_meant(host: Host, release: Release) -> Change | None:
    """keadm up to v1.22 starting edgecore without systemd runs `edgecore >
    /etc/kubeedge/kubeedge/edge/edgecore.log 2>&1 &`, and nothing creates that directory:
    the shell cannot open the redirect and runs nothing, yet keadm says "edgecore is
    running" and waits 300 s for certificates that never come (seen on the real v1.13.0
    keadm). A missing directory after that line means exactly this; kedge does what keadm
    meant — the directory, then edgecore with its output there."""
    log = release.background_log
    directory = posixpath.dirname(log)
    if host.exists(directory) or pids(host) or not host.exists(EDGECORE_BIN):
        return None
    host.path(directory).mkdir(parents=True, exist_ok=True)
    await host.start_background(["edgecore"], log)
    return Change(
        action="start",
        target="edgecore",
        detail=f"keadm's background start ran nothing ({directory} did not exist); "
        f"started as keadm meant, output in {log}",
    )


async def start(host: Host, release: Release) -> str:
    """Start edgecore the way it was meant to run here — systemd's unit when systemd runs
    it (enabled too: a failed upgrade leaves it disabled), else in the background as
    keadm starts it — and say how. CommandError when it cannot be started."""
    if by_systemd(host):
        done = await host.run(["systemctl", "enable", "--now", "edgecore"], timeout=60)
        if not done.ok:
            raise CommandError(
                f"systemctl enable --now edgecore exited {done.returncode}: {done.stderr.strip()}"
            )
        return "through systemd (systemctl enable --now edgecore)"
    log = release.background_log
    host.path(posixpath.dirname(log)).mkdir(parents=True, exist_ok=True)
    await host.start_background(["edgecore"], log)
    return f"in the background as keadm starts it, output in {log}"


async def last_words(host: Host, release: str, lines: int = 60) -> str:
    """edgecore's last log lines: systemd's journal, or the file keadm's background start
    redirects to (empty when neither can be read)."""
    if not by_systemd(host):
        text = host.read_tail(Release(release).background_log)
        return "\n".join(text.splitlines()[-lines:])
    if host.which("journalctl") is None:
        return ""
    try:
        result = await host.run(
            ["journalctl", "-u", EDGECORE_UNIT, "-n", str(lines), "--no-pager"], timeout=15
        )
    except CommandError:
        return ""
    return result.stdout

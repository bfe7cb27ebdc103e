"""The first boot, phase by phase (kedge.wire.firstboot.PHASES): seed → network → clock →
enrolling → checking → fixing → joining → starting → joined. Each phase is saved before
it starts, so a power loss resumes there; each is safe to run again.

What the board waits for (the network, the clock, an admin's approval) it retries with
backoff, each within its own bound; what only a person can change (a used-up secret, k3s
on the board) blocks the first boot with the reason and the remedy — and the daemon is
started anyway once the board is enrolled, so it stays reachable and reports why. A new
seed on the boot partition is looked for at every retry and starts over with it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from pydantic import SecretStr

from agent import __version__, enrollment, seed_state
from agent.firstboot import intake
from agent.firstboot.report import Reporter
from agent.firstboot_state import Record, now
from agent.fix import FIXABLE, run_fix
from agent.join import run_join
from agent.preflight import run_preflight
from agent.settings import AgentSettings
from agent.state import StateDir
from kedge import mqtt
from kedge.cloud_client import ApiAnswerError, ApiClient, ClientError
from kedge.errors import CommandError
from kedge.host import Host
from kedge.kubeedge import ARCH_BY_MACHINE
from kedge.wire import (
    CheckResult,
    DaemonStatus,
    EnrollPending,
    EnrollRequest,
    FirstBootProgress,
    PhaseTime,
    Status,
)
from kedge.wire.firstboot import PHASES, Phase, State

log = structlog.get_logger(__name__)
AGENT_UNIT = "kedge-agent.service"
EXIT_BLOCKED = 2  # the unit does not restart on it (RestartPreventExitStatus=2)
EXIT_RETRY = 1  # it does, after RestartSec
DAEMON_POLL_S = 0.5


class Blocked(Exception):
    """The first boot cannot go on by itself now: `summary`, and what would change it.
    state "blocked": a person must act; "waiting": the outside may still come round.
    code 2: the unit does not restart it; 1: it tries again later."""

    def __init__(self, summary: str, remedy: str, check: str | None = None, *,
                 code: int = EXIT_BLOCKED, state: State = "blocked") -> None:  # fmt: skip
        super().__init__(summary)
        self.summary, self.remedy, self.check, self.code, self.state = (
            summary, remedy, check, code, state)  # fmt: skip


class Reseeded(Exception):
    """A new seed appeared on the boot partition while the board waited."""


@dataclass
class Context:
    host: Host
    state: StateDir
    reload: Callable[[], AgentSettings]  # the settings again (after enrollment changed them)
    report: Reporter
    taken: seed_state.TakenSeed

    @property
    def settings(self) -> AgentSettings:
        return self.reload()


NEW_SEED = (
    "write a corrected seed onto the boot partition (kedge-cloud-api seed create, then "
    "kedge-agent seed --write): the board takes it at its next boot, or within a minute "
    "while it waits"
)


async def wait(
    ctx: Context, phase: Phase, bound_s: float, attempt: Callable[[], Awaitable[str | None]]
) -> None:
    """Retry `attempt` (a coroutine function answering None when done, else why not) with
    backoff within `bound_s`; Blocked when the bound is reached. Looks for a new seed
    between tries."""
    limits = ctx.settings.firstboot
    backoff = mqtt.Backoff(limits.backoff_s, limits.backoff_cap_s)
    deadline = time.monotonic() + bound_s
    while True:
        why = await attempt()
        if why is None:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise Blocked(f"gave up after {bound_s:g} s: {why}", _remedy(phase), code=EXIT_RETRY,
                          state="waiting")  # fmt: skip
        delay = min(backoff.next(), left)
        await ctx.report.enter(phase, "waiting", f"{why} (next try in {delay:.0f} s)")
        await asyncio.sleep(delay)
        found = intake.find(ctx.host)
        if found is not None and found.sha256 != ctx.taken.sha256:
            raise Reseeded


def _remedy(phase: Phase) -> str:
    return {
        "network": "connect the board so it reaches the cloud API (cable, DHCP, the URL in the "
        "seed); the unit tries again in 5 minutes",
        "enrolling": "the unit tries again in 5 minutes; " + NEW_SEED,
        "checking": "see kedge-agent check on the board; the unit tries again in 5 minutes",
    }.get(phase, "the unit tries again in 5 minutes")


# -- the phases -------------------------------------------------------------------------
async def network(ctx: Context) -> None:
    url, pin = ctx.taken.cloud_api, ctx.taken.ca_sha256
    ca_file = _ca_file(ctx)

    async def reach() -> str | None:
        try:
            async with ApiClient(url, timeout=10, ca_file=ca_file, ca_sha256=pin) as api:
                await api.call("GET", "/healthz")
        except ClientError as exc:
            return str(exc)
        return None

    await ctx.report.enter("network", "running", f"reaching the cloud API at {url}")
    await wait(ctx, "network", ctx.settings.firstboot.network_wait_s, reach)
    ctx.report.outcome(
        f"the cloud API at {url} answers" + (" (its certificate pinned)" if pin else "")
    )


def _ca_file(ctx: Context) -> Path | None:
    if ctx.taken.ca_pem is None:
        return None
    path = ctx.state.path / "cloud-api-ca.pem"
    if not path.exists():
        path.write_text(ctx.taken.ca_pem)
    return path


async def clock(ctx: Context) -> None:
    """A clock far off breaks TLS and the join ("certificate is not yet valid"). The time
    service usually corrects it within a minute of the network coming up: wait for that,
    then step it as `fix` does."""

    async def right() -> str | None:
        found = await run_preflight(ctx.settings, ctx.host, only=["clock"])
        c = _one(found.report.checks, "clock")
        return c.summary if c is not None and c.status in (Status.FAIL, Status.WARN) else None

    await ctx.report.enter("clock", "running", "checking the clock against NTP")
    try:
        await wait(ctx, "clock", ctx.settings.firstboot.clock_wait_s, right)
    except Blocked as exc:
        wrong = str(exc).split(": ", 1)[-1]
        await ctx.report.enter(
            "clock", "running", f"stepping the clock ({wrong}; the time service did not)"
        )
        with ctx.state.lock("firstboot"):
            fixed = await run_fix(ctx.settings, ctx.host, only=["clock"], dry_run=False,
                                  emit=ctx.report.emit)  # fmt: skip
        # Unfixed, the checks say so again later; enrollment may still work (pinned).
        ctx.report.outcome(f"stepped the clock: it was {wrong.removeprefix('clock is ')}" if fixed.ok
                           else f"could not step the clock: {fixed.summary}")  # fmt: skip
        return
    ctx.report.outcome("the clock agrees with NTP")


def _one(checks: list[CheckResult], check_id: str) -> CheckResult | None:
    return next((c for c in checks if c.id == check_id), None)


async def enrolling(ctx: Context) -> None:
    node, url = ctx.taken.node, ctx.taken.cloud_api
    known = enrollment.load(ctx.state.path)
    secret = seed_state.secret(ctx.state.path)
    if (
        secret is None
        and known is not None
        and (known.node_name, known.cloud_api_url) == (node, url)
    ):
        return  # enrolled with this seed before a power loss: its secret is spent
    if secret is None:
        raise Blocked("the seed's secret is gone and the board is not enrolled with it",
                      NEW_SEED)  # fmt: skip
    arch = ARCH_BY_MACHINE.get(ctx.host.machine())
    if arch is None:
        raise Blocked(f"this machine ({ctx.host.machine()}) is not one KubeEdge runs on",
                      "use an amd64, arm64 or arm board")  # fmt: skip
    body = EnrollRequest(node_name=node, secret=SecretStr(secret.get_secret_value()), arch=arch,
                         agent_version=__version__, **enrollment.hardware(ctx.host),
                         **enrollment.proof_fields(known, node))  # fmt: skip
    await ctx.report.enter("enrolling", "running", f"enrolling {node} with {url}")
    pending_until = time.monotonic() + ctx.settings.firstboot.pending_wait_s

    async def ask() -> str | None:
        try:
            answer = await enrollment.request(url, body, ca_file=_ca_file(ctx),
                                              ca_sha256=ctx.taken.ca_sha256)  # fmt: skip
        except ApiAnswerError as exc:
            if exc.status in (401, 403, 409, 422):
                # A refusal: asking again would hammer the API for the same answer.
                raise Blocked(
                    f"the cloud API refused the enrollment: {exc.message}", NEW_SEED
                ) from exc
            return f"the cloud API answered {exc.status}: {exc.message}"
        except ClientError as exc:
            return str(exc)
        if isinstance(answer, EnrollPending):
            if time.monotonic() > pending_until:
                raise Blocked(f"still waiting for approval: {answer.reason}",
                              f"kedge-cloud-api boards approve {node}", code=EXIT_RETRY,
                              state="waiting")  # fmt: skip
            return f"waiting for approval: {answer.reason}"
        with ctx.state.lock("firstboot"):
            enrollment.save(ctx.state.path, answer)
            seed_state.spent(ctx.state.path)
        return None

    # Approval can take a day: the bound here is the pending one; network trouble is
    # bounded by the next boot's retry (the unit restarts a failed first boot).
    await wait(ctx, "enrolling", ctx.settings.firstboot.pending_wait_s, ask)
    got = enrollment.load(ctx.state.path)
    if got is not None:
        ctx.report.outcome(f"enrolled as {node}: cloudcore {got.cloudcore}, KubeEdge "
                           f"{got.kubeedge_version}" + (", broker credentials" if got.mqtt else ""))  # fmt: skip


def _blocking(checks: list[CheckResult]) -> list[CheckResult]:
    return [c for c in checks if c.status.blocks]


async def _failing(ctx: Context) -> list[CheckResult]:
    return _blocking((await run_preflight(ctx.settings, ctx.host)).report.checks)


async def checking(ctx: Context) -> list[CheckResult]:
    await ctx.report.enter("checking", "running", "running every check keadm join depends on")
    failing = await _failing(ctx)
    ctx.report.outcome("failing: " + ", ".join(c.id for c in failing) if failing
                       else "no check fails")  # fmt: skip
    return failing


async def fixing(ctx: Context, failing: list[CheckResult]) -> None:
    """Repair what `fix` may repair, within fix_attempts; what it may not (k3s, the
    memory cgroup) blocks, re-checked within blocked_wait_s (the owner may act)."""
    settings = ctx.settings
    archive = None
    if ctx.taken.images_archive:
        archive = ctx.host.path(str(Path(ctx.taken.found_at).parent / ctx.taken.images_archive))
    for attempt in range(1, settings.firstboot.fix_attempts + 1):
        names = ", ".join(c.id for c in failing)
        await ctx.report.enter("fixing", "running", f"repairing {names} (attempt {attempt})")
        with ctx.state.lock("firstboot"):
            await run_fix(ctx.reload(), ctx.host, dry_run=False, emit=ctx.report.emit,
                          from_archive=archive if archive and archive.is_file() else None)  # fmt: skip
        before, failing = {c.id for c in failing}, await _failing(ctx)
        if not failing:
            ctx.report.outcome(f"repaired {names}; no check fails now")
            return
        if all(c.id not in FIXABLE for c in failing) or {c.id for c in failing} == before:
            break  # another try would do the same again
    first = failing[0]
    summary = f"{first.id}: {first.summary}"
    await ctx.report.enter("fixing", "blocked", summary, remedy=first.remedy, check=first.id)
    await _start_anyway(ctx)  # reachable and reporting while a person acts

    # Only the checks run again (they are local and cheap); the record stays "blocked",
    # naming the check and its remedy, until they pass or the bound is reached.
    backoff = mqtt.Backoff(settings.firstboot.backoff_s, settings.firstboot.backoff_cap_s)
    deadline = time.monotonic() + settings.firstboot.blocked_wait_s
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(backoff.next(), left))
        if not await _failing(ctx):
            ctx.report.outcome(f"{first.id} cleared by someone on the board; no check fails now")
            return
    raise Blocked(summary, first.remedy, first.id, code=EXIT_RETRY)


async def joining(ctx: Context) -> None:
    settings = ctx.settings
    backoff = mqtt.Backoff(settings.firstboot.backoff_s, settings.firstboot.backoff_cap_s)
    for attempt in range(1, settings.firstboot.join_attempts + 1):
        await ctx.report.enter(
            "joining", "running", f"keadm join to {settings.cloudcore} (attempt {attempt})"
        )
        with ctx.state.lock("firstboot"):
            report = await run_join(
                ctx.reload(), ctx.host, ctx.state, ignore=[], emit=ctx.report.emit
            )
        if report.ok:
            ctx.report.outcome(report.summary)
            return
        cause = report.causes[0] if report.causes else None
        blocking = _blocking(report.checks)
        if attempt == settings.firstboot.join_attempts:
            remedy = (
                cause.remedy
                if cause
                else blocking[0].remedy
                if blocking
                else "see kedge-agent join"
            )
            check = blocking[0].id if blocking and not cause else None
            await _start_anyway(ctx)  # reachable and reporting while a person looks
            raise Blocked(report.summary, remedy, check, code=EXIT_RETRY)
        await ctx.report.enter("joining", "waiting", report.summary)
        await asyncio.sleep(backoff.next())


async def start_daemon(ctx: Context) -> Blocked | None:
    """`kedge-agent run` enabled and started, and seen running: it has written its status
    (daemon.json) since, its process is alive, and the broker did not refuse it. From
    then on the daemon relays the progress. Otherwise why not, with the daemon's own
    words where it left any (its journal), as a Blocked to raise or to note."""
    if ctx.report.daemon_running:
        return None
    began = time.time()
    result = await ctx.host.run(["systemctl", "enable", "--now", AGENT_UNIT], timeout=60)
    if result.returncode != 0:
        why = result.stderr.strip()[:300] or f"exit {result.returncode}"
        return _daemon_down(f"systemctl enable --now {AGENT_UNIT} failed: {why}")
    wait_s = ctx.settings.firstboot.daemon_wait_s
    deadline = time.monotonic() + wait_s
    status_file = ctx.state.path / "daemon.json"
    while True:
        status = _fresh_status(status_file, began)
        if status is not None and any(p.pid == status.pid for p in ctx.host.processes()):
            if status.refused:
                return Blocked(
                    f"{AGENT_UNIT} runs, but the broker refuses it: {status.refused}",
                    "check the [mqtt] credentials the enrollment wrote (kedge-agent status), "
                    "or enroll the board again",
                    code=EXIT_RETRY,
                )
            ctx.report.daemon_running = True
            return None
        if await ctx.host.unit_state(AGENT_UNIT) in ("failed", "inactive"):
            return _daemon_down(f"{AGENT_UNIT} exited: {await _last_words(ctx.host)}")
        if time.monotonic() > deadline:
            return _daemon_down(
                f"{AGENT_UNIT} did not write its status within {wait_s:g} s: "
                f"{await _last_words(ctx.host)}"
            )
        await asyncio.sleep(DAEMON_POLL_S)


async def _start_anyway(ctx: Context) -> None:
    """The daemon started for a board that stays blocked: if it does not come up, the
    first boot keeps publishing itself and the journal says why."""
    if (down := await start_daemon(ctx)) is not None:
        log.warning("firstboot.daemon_not_started", error=down.summary)


def _daemon_down(summary: str) -> Blocked:
    return Blocked(
        summary,
        f"journalctl -u {AGENT_UNIT} shows why; fix what it says (kedge-agent run --help, "
        "/etc/kedge/agent.toml), then systemctl restart kedge-firstboot.service",
        code=EXIT_RETRY,
    )


def _fresh_status(path: Path, since: float) -> DaemonStatus | None:
    """The daemon's status file if written since `since`."""
    try:
        if path.stat().st_mtime < since - 1:
            return None
        return DaemonStatus.model_validate_json(path.read_bytes())
    except (OSError, ValueError):
        return None


async def _last_words(host: Host) -> str:
    """The daemon's last line in its journal (its error says what and how to fix it)."""
    if host.which("journalctl") is None:
        return "no journal to read"
    try:
        result = await host.run(
            ["journalctl", "-u", AGENT_UNIT, "-n", "20", "--no-pager", "-o", "cat"], timeout=15
        )
    except CommandError:
        return "its journal could not be read"
    lines = [
        ln.strip() for ln in result.stdout.splitlines() if ln.strip() and not ln.startswith("--")
    ]
    return lines[-1][:300] if lines else "it wrote nothing to its journal"


async def run_phases(ctx: Context) -> int:
    """From the recorded phase to the end; the exit code."""
    start = PHASES.index(ctx.report.progress.phase)
    if start == 0:
        start = 1  # the seed was taken before the record said so
    failing: list[CheckResult] = []
    for phase in PHASES[start:]:
        if phase == "network":
            await network(ctx)
        elif phase == "clock":
            await clock(ctx)
        elif phase == "enrolling":
            await enrolling(ctx)
            ctx.report.settings = ctx.settings  # broker credentials: publish from now on
        elif phase == "checking":
            failing = await checking(ctx)
        elif phase == "fixing":
            failing = failing or await _failing(ctx)
            if failing:
                await fixing(ctx, failing)
        elif phase == "joining":
            await joining(ctx)
        elif phase == "starting":
            await ctx.report.enter("starting", "running", f"enabling and starting {AGENT_UNIT}")
            if (down := await start_daemon(ctx)) is not None:
                raise down
            # Done only now: the daemon runs (and relays this from the file).
            took = (now() - ctx.report.progress.started_at).total_seconds()
            await ctx.report.enter("joined", "done", f"joined as {ctx.taken.node} in {took:.0f} s")
            return 0
    return 0


def fresh_progress(node: str) -> FirstBootProgress:
    at = now()
    return FirstBootProgress(node=node, phase="seed", state="running", since=at,
                             summary="took the seed off the boot partition", started_at=at,
                             timeline=[PhaseTime(phase="seed", started_at=at)])  # fmt: skip


def new_record(taken: seed_state.TakenSeed) -> Record:
    return Record(seed_sha256=taken.sha256, progress=fresh_progress(taken.node))

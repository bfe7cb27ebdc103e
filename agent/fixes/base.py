"""What a fix is: an async function from a check's result to the changes it made."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from agent.checks.facts import Facts
from agent.docker_api import DockerClient
from agent.edgecore_run import systemd_runs
from agent.settings import AgentSettings
from kedge.errors import CommandError, KedgeError
from kedge.host import Host
from kedge.wire import Change, CheckResult


class CannotFix(KedgeError):
    """The finding is real but kedge will not (or cannot) repair it; says what to do."""

    def __init__(self, message: str, remedy: str = "", *, docker_gone: bool = False) -> None:
        super().__init__(message)
        self.remedy = remedy
        self.docker_gone = docker_gone  # docker itself stopped answering: stop trying


@dataclass
class FixContext:
    settings: AgentSettings
    host: Host
    docker: DockerClient
    dry_run: bool
    emit: Callable[[str], None]
    facts: Facts
    from_archive: Path | None = None
    force_remove_conflicts: bool = False
    cni_archive: Path | None = None
    changes: list[Change] = field(default_factory=list)

    def change(self, action: str, target: str, detail: str = "") -> None:
        """Record (and announce) a change before making it, or instead of it (--dry-run)."""
        verb = "would" if self.dry_run else "will"
        self.emit(f"{verb} {action} {target}{f': {detail}' if detail else ''}")
        self.changes.append(
            Change(action=action, target=target, detail=detail, done=not self.dry_run)
        )

    async def restart(self, unit: str, remedy: str) -> None:
        """`systemctl restart UNIT`, only where systemd runs (/run/systemd/system): a
        board can carry systemctl without it (a container, another init), and there the
        service is restarted however that board runs it — kedge says so instead."""
        if not systemd_runs(self.host):
            raise CannotFix(
                f"the change is written, but no systemd runs here to restart {unit}: "
                "restart it the way this board runs it",
                remedy,
            )
        try:
            done = await self.host.run(["systemctl", "restart", unit], timeout=120)
        except CommandError as exc:
            raise CannotFix(
                f"could not restart {unit}: {exc}", f"systemctl restart {unit}"
            ) from exc
        if not done.ok:
            raise CannotFix(
                f"systemctl restart {unit} exited {done.returncode}: {done.stderr.strip()}", remedy
            )

    def failed(self, why: str) -> None:
        """The change announced last could not be made: it stays in the report, not done."""
        last = self.changes[-1]
        self.changes[-1] = last.model_copy(update={"done": False, "detail": why[:300]})


Fixer = Callable[[FixContext, CheckResult], Awaitable[None]]
FIXES: dict[str, Fixer] = {}


def fixes(check_id: str) -> Callable[[Fixer], Fixer]:
    def register(func: Fixer) -> Fixer:
        FIXES[check_id] = func
        return func

    return register

"""A private machine for real KubeEdge: its own mount, network and PID namespaces, only
loopback inside, with ADDRESS on lo (and the default route through it) serving as the
API server's advertise address, cloudcore's and the edge node's IP; private copies of
every path KubeEdge hard-codes, and a private /run so runtime sockets stay inside.

Real KubeEdge processes are visible machine-wide by name (keadm and `pidof edgecore`
look for them), and cgroups are not namespaced here: one sandbox at a time, and
nothing outlives it — stopping it kills its first process, which takes every process
of its PID namespace with it (tests/harness/pidns.py does the same for simulated
boards)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.pidns import kill_init, start_init
from tests.harness.procs import spawn

ADDRESS = "10.200.0.1"
# Paths KubeEdge writes whatever it is told (keadm, edgecore, their systemd units).
PRIVATE = (
    "/etc/kubeedge",
    "/var/lib/kubeedge",
    "/var/lib/edged",
    "/var/lib/kubelet",
    "/var/log/kubeedge",
    "/usr/local/bin",
    "/etc/systemd/system",
    "/etc/containerd",
    "/etc/cni/net.d",
)
# cgroups are not namespaced here: what the edge node's pods made is removed at stop.
CGROUPS = Path("/sys/fs/cgroup")
POD_CGROUPS = ("kubepods", "kubepods.slice")


@dataclass
class Sandbox:
    work: Path
    proc: subprocess.Popen[bytes] | None = None
    init: int = 0  # its first process, as this machine sees it
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)
    made: list[Path] = field(default_factory=list)  # mount points this machine lacked
    cgroups_before: set[Path] = field(default_factory=set)

    def start(self) -> Sandbox:
        self.work.mkdir(parents=True, exist_ok=True)
        self.cgroups_before = set(_pod_cgroups())
        namespaces = [
            "--mount",
            "--net",
            "--pid",
            "--fork",
            "--mount-proc",
            "--propagation",
            "private",
        ]
        self.proc, self.init = start_init(namespaces, self.work / "init.log")
        self.check("ip", "link", "set", "lo", "up")
        self.check("ip", "addr", "add", f"{ADDRESS}/32", "dev", "lo")
        self.check("ip", "route", "add", "default", "dev", "lo", "src", ADDRESS)
        for path in PRIVATE:
            private = self.work / "root" / path.lstrip("/")
            private.mkdir(parents=True, exist_ok=True)
            if not Path(path).exists():  # a mount point on this machine, removed at stop
                Path(path).mkdir(parents=True)
                self.made.append(Path(path))
            self.check("mount", "--bind", str(private), path)
        self.check("mount", "-t", "tmpfs", "-o", "mode=755", "tmpfs", "/run")
        return self

    def argv(self, *argv: str) -> list[str]:
        """`argv`, run inside the sandbox."""
        return ["nsenter", f"--target={self.init}", "--mount", "--net", "--pid", "--", *argv]

    def run(self, *argv: str, timeout: float = 60, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:  # fmt: skip
        return subprocess.run(self.argv(*argv), capture_output=True, text=True, timeout=timeout,
                              check=False, env=env)  # fmt: skip

    def check(self, *argv: str, timeout: float = 60) -> str:
        done = self.run(*argv, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: exit {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def spawn(self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None
              ) -> subprocess.Popen[bytes]:  # fmt: skip
        """A long-running process inside the sandbox, its output in `log`."""
        proc = spawn(self.argv(*argv), log, env=env)
        self.started.append(proc)
        return proc

    def stop(self) -> None:
        kill_init(self.proc, self.init)
        self.proc, self.init = None, 0
        for p in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(10)
        self.started.clear()
        for path in reversed(self.made):
            with contextlib.suppress(OSError):  # left alone if something was put there
                path.rmdir()
        self.made.clear()
        for tree in set(_pod_cgroups()) - self.cgroups_before:
            _remove_cgroup(tree)


def _pod_cgroups() -> list[Path]:
    return [c / name for c in CGROUPS.glob("*") for name in POD_CGROUPS if (c / name).is_dir()]


def _remove_cgroup(tree: Path) -> None:
    """A cgroup tree, deepest first (a cgroup directory is removed with rmdir, once its
    processes are gone — they died with the sandbox)."""
    for d in sorted(
        (p for p in tree.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
    ):
        with contextlib.suppress(OSError):
            d.rmdir()
    with contextlib.suppress(OSError):
        tree.rmdir()


@contextlib.contextmanager
def sandbox(work: Path) -> Iterator[Sandbox]:
    box = Sandbox(work).start()
    try:
        yield box
    finally:
        box.stop()

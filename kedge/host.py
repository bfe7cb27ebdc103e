"""The one seam between kedge and the board it runs on.

Files are read below `root` (a live board is root `/`, a mounted image or a test
fixture is any directory). Commands are resolved through the search path *below the
root*, run without a shell and always with a timeout. Processes, sockets, memory and
the Docker daemon are those of the running kernel: a fixture board supplies real ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import psutil

from kedge.errors import CommandError, HostError

DEFAULT_SEARCH_PATH = (
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
)
_COMMAND_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
MAX_READ = 4 * 1024 * 1024
READ_CHUNK = 64 * 1024
MAX_LINE = 8 * 1024


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    name: str
    exe: str

    @property
    def program(self) -> str:
        """The executable's file name: what a process *is*, whatever it calls itself."""
        return PurePosixPath(self.exe).name if self.exe else self.name


@dataclass(frozen=True)
class Listener:
    port: int
    address: str
    pid: int | None
    process: str | None


@dataclass(frozen=True)
class Memory:
    total: int
    available: int
    free: int
    percent: float


@dataclass(frozen=True)
class DiskUsage:
    total: int
    free: int
    percent: float


class Host:
    """Everything kedge reads from or does to a board goes through one of these."""

    def __init__(
        self,
        root: Path | str = "/",
        *,
        search_path: Sequence[str] | None = None,
        machine: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.search_path = tuple(search_path or _env_search_path())
        self._machine = machine
        self._env = dict(env) if env is not None else None

    @property
    def is_live(self) -> bool:
        return self.root == Path("/")

    # -- files -------------------------------------------------------------
    def path(self, p: str | PurePosixPath) -> Path:
        """The real path of a board path (`/etc/kubeedge` below the root)."""
        rel = str(p).lstrip("/")
        return self.root / rel if rel else self.root

    def read_text(self, p: str, *, limit: int = MAX_READ) -> str | None:
        """The file's text, or None when it does not exist."""
        chunks: list[bytes] = []
        size = 0
        try:
            with self.path(p).open("rb") as fh:
                # procfs/sysfs refuse huge single reads (ENOMEM): read in pages.
                while size < limit and (chunk := fh.read(min(65536, limit - size))):
                    chunks.append(chunk)
                    size += len(chunk)
            return b"".join(chunks).decode("utf-8", errors="replace")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise HostError(f"cannot read {p}: {exc.strerror}") from exc

    def read_tail(self, p: str, *, limit: int = 65536) -> str:
        """The file's last `limit` bytes as text ("" when it does not exist): logs grow."""
        try:
            with self.path(p).open("rb") as fh:
                fh.seek(0, os.SEEK_END)
                fh.seek(max(0, fh.tell() - limit))
                return fh.read(limit).decode("utf-8", errors="replace")
        except (FileNotFoundError, NotADirectoryError):
            return ""
        except OSError as exc:
            raise HostError(f"cannot read {p}: {exc.strerror}") from exc

    def exists(self, p: str) -> bool:
        return self.path(p).exists() or self.path(p).is_symlink()

    def entries(self, p: str) -> list[str]:
        """Names inside a directory, sorted; empty when it is missing or not a directory."""
        try:
            return sorted(entry.name for entry in self.path(p).iterdir())
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise HostError(f"cannot list {p}: {exc.strerror}") from exc

    def which(self, name: str) -> str | None:
        """The board path of an executable found on the search path, or None."""
        if not _COMMAND_NAME_RE.fullmatch(name):
            raise ValueError(f"not a command name: {name!r}")
        for directory in self.search_path:
            candidate = f"{directory.rstrip('/')}/{name}"
            real = self.path(candidate)
            if real.is_file() and os.access(real, os.X_OK):
                return candidate
        return None

    # -- commands ----------------------------------------------------------
    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        input_data: bytes | None = None,
    ) -> CommandResult:
        """Run a command found on the search path; never a shell, always a deadline."""
        if not argv:
            raise ValueError("empty argv")
        found = self.which(argv[0])
        if found is None:
            raise CommandError(f"{argv[0]}: command not found on {':'.join(self.search_path)}")
        real = [str(self.path(found)), *argv[1:]]
        try:
            proc = await asyncio.create_subprocess_exec(
                *real,
                stdin=asyncio.subprocess.PIPE
                if input_data is not None
                else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                env=self._env,
            )
        except OSError as exc:
            raise CommandError(f"{argv[0]}: cannot start: {exc.strerror or exc}") from exc
        try:
            async with asyncio.timeout(timeout):
                out, err = await proc.communicate(input_data)
        except (TimeoutError, asyncio.CancelledError) as exc:
            # Deadline or cancellation: the child (and its children) must not outlive us.
            await _kill_and_reap(proc)
            if isinstance(exc, TimeoutError):
                raise CommandError(f"{argv[0]}: no answer within {timeout:g} s") from None
            raise
        return CommandResult(
            tuple(argv),
            proc.returncode if proc.returncode is not None else -1,
            out.decode("utf-8", errors="replace"),
            err.decode("utf-8", errors="replace"),
        )

    async def unit_properties(
        self, unit: str, *names: str, timeout: float = 10.0
    ) -> dict[str, str] | None:
        """`systemctl show -p NAME... UNIT` as a dict; None when there is no systemctl or
        it does not answer (then nothing can be said about the unit)."""
        if self.which("systemctl") is None:
            return None
        argv = ["systemctl", "show", *(a for n in names for a in ("-p", n)), unit]
        try:
            result = await self.run(argv, timeout=timeout)
        except CommandError:
            return None
        if not result.ok:
            return None
        pairs = (line.partition("=") for line in result.stdout.splitlines())
        return {key.strip(): value.strip() for key, sep, value in pairs if sep}

    async def unit_state(self, unit: str, *, timeout: float = 10.0) -> str | None:
        """systemd's word for the unit (ActiveState: active, inactive, failed, activating,
        ...); None when there is no systemctl or it does not answer."""
        props = await self.unit_properties(unit, "ActiveState", timeout=timeout)
        return (props or {}).get("ActiveState") or None

    async def start_background(
        self, argv: Sequence[str], log: str, *, timeout: float = 10.0
    ) -> None:
        """Start a long-lived program detached from us, as `PROGRAM > LOG 2>&1 &` would:
        through util-linux's `setsid --fork`, so it is nobody's child here and outlives
        this process (asyncio kills a child it still tracks when its loop closes)."""
        setsid = self.which("setsid")
        found = self.which(argv[0]) if argv else None
        if setsid is None or found is None:
            missing = "setsid" if setsid is None else (argv[0] if argv else "?")
            raise CommandError(f"{missing}: command not found on {':'.join(self.search_path)}")
        try:
            with self.path(log).open("ab") as out:
                proc = await asyncio.create_subprocess_exec(
                    str(self.path(setsid)),
                    "--fork",
                    str(self.path(found)),
                    *argv[1:],
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=out,
                    stderr=asyncio.subprocess.STDOUT,
                    env=self._env,
                )
        except OSError as exc:
            raise CommandError(f"{argv[0]}: cannot start: {exc.strerror or exc}") from exc
        try:
            async with asyncio.timeout(timeout):
                await proc.wait()
        except TimeoutError:
            await _kill_and_reap(proc)
            raise CommandError(f"setsid --fork {argv[0]}: no answer within {timeout:g} s") from None

    async def run_streaming(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        on_line: Callable[[str], None],
        env: Mapping[str, str] | None = None,
    ) -> int:
        """Run a long command, handing each output line (stdout and stderr merged) to
        on_line as it arrives; return the exit code."""
        found = self.which(argv[0]) if argv else None
        if found is None:
            raise CommandError(
                f"{argv[0] if argv else '?'}: command not found on {':'.join(self.search_path)}"
            )
        try:
            proc = await asyncio.create_subprocess_exec(
                str(self.path(found)), *argv[1:],
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True,
                env=dict(env) if env is not None else self._env,
                preexec_fn=_die_with_parent,  # one call, no locks: safe after fork
            )  # fmt: skip
        except OSError as exc:
            raise CommandError(f"{argv[0]}: cannot start: {exc.strerror or exc}") from exc
        assert proc.stdout is not None
        lines = _LineCutter(on_line)
        try:
            async with asyncio.timeout(timeout):
                while chunk := await proc.stdout.read(READ_CHUNK):
                    lines.feed(chunk)
                lines.close()
                return await proc.wait()
        except TimeoutError:
            raise CommandError(f"{argv[0]}: no result within {timeout:g} s") from None
        finally:
            # Whatever ended the wait (deadline, cancellation, on_line raising), the child
            # and its children must not outlive it, blocked on a pipe nobody reads.
            if proc.returncode is None:
                await _kill_and_reap(proc)

    # -- the running kernel ------------------------------------------------
    def machine(self) -> str:
        return self._machine or os.uname().machine

    def hostname(self) -> str:
        if not self.is_live:
            text = self.read_text("/etc/hostname")
            if text and text.strip():
                return text.strip()
        return socket.gethostname()

    def now(self) -> float:
        return time.time()

    def processes(self) -> list[ProcessInfo]:
        """Running processes; zombies (exited, waiting to be reaped) are not running."""
        procs = []
        for p in psutil.process_iter(["pid", "name", "exe", "status"]):
            info = p.info
            if info["status"] == psutil.STATUS_ZOMBIE:
                continue
            procs.append(ProcessInfo(info["pid"], info["name"] or "", info["exe"] or ""))
        return procs

    def peers_of(self, program: str) -> list[tuple[str, int]]:
        """The remote (address, port) of every established TCP connection held by a
        process running `program`."""
        pids = {p.pid for p in self.processes() if p.program == program or p.name == program}
        try:
            conns = psutil.net_connections(kind="tcp")
        except psutil.Error as exc:
            raise HostError(f"cannot list sockets: {exc}") from exc
        return [
            (c.raddr.ip, c.raddr.port)
            for c in conns
            if c.pid in pids and c.status == psutil.CONN_ESTABLISHED and c.raddr
        ]

    def listeners(self) -> list[Listener]:
        """TCP sockets in LISTEN state, with their owner where the kernel tells."""
        try:
            conns = psutil.net_connections(kind="tcp")
        except psutil.Error as exc:
            raise HostError(f"cannot list sockets: {exc}") from exc
        owners: dict[int, str] = {}
        result = []
        for c in conns:
            if c.status != psutil.CONN_LISTEN or not c.laddr:
                continue
            name = None
            if c.pid is not None:
                if c.pid not in owners:
                    with contextlib.suppress(psutil.Error):
                        owners[c.pid] = psutil.Process(c.pid).name()
                name = owners.get(c.pid)
            result.append(Listener(c.laddr.port, c.laddr.ip, c.pid, name))
        return result

    def addresses(self) -> list[tuple[str, str]]:
        """(interface, IP address) for every IPv4/IPv6 address of this network namespace."""
        return [
            (name, a.address.split("%", 1)[0])
            for name, addrs in sorted(psutil.net_if_addrs().items())
            for a in addrs
            if a.family in (socket.AF_INET, socket.AF_INET6)
        ]

    def terminate(self, pid: int, timeout: float = 10.0) -> bool:
        """SIGTERM, then SIGKILL after `timeout`; False if the process was already gone."""
        try:
            proc = psutil.Process(pid)
            proc.terminate()
            try:
                proc.wait(timeout)
            except psutil.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        except psutil.NoSuchProcess:
            return False
        return True

    def memory(self) -> Memory:
        vm = psutil.virtual_memory()
        return Memory(vm.total, vm.available, vm.free, vm.percent)

    def cpu_count(self) -> int:
        return psutil.cpu_count(logical=True) or 0

    async def cpu_busy_percent(self, sample_s: float) -> float:
        """CPU use over a short window, measured without blocking the event loop."""
        before = psutil.cpu_times()
        await asyncio.sleep(sample_s)
        after = psutil.cpu_times()
        total = sum(after) - sum(before)
        idle = (after.idle + getattr(after, "iowait", 0.0)) - (
            before.idle + getattr(before, "iowait", 0.0)
        )
        return 0.0 if total <= 0 else max(0.0, min(100.0, 100.0 * (1 - idle / total)))

    def process_count(self) -> int:
        return len(psutil.pids())

    # -- mounts --------------------------------------------------------------
    def mounts_below(self, p: str) -> list[str]:
        """Mount points strictly below the board path `p`, as board paths, deepest first
        (/proc/self/mountinfo: a bind mount of a directory of the same filesystem is a
        mount too, which comparing devices would miss)."""
        top = str(self.path(p)).rstrip("/") + "/"
        text = Path("/proc/self/mountinfo").read_text(errors="replace")
        found = set()
        for line in text.splitlines():
            parts = line.split()
            if len(parts) > 4:
                point = _unescape_mount(parts[4])
                if point.startswith(top):
                    found.add("/" + point.removeprefix(str(self.root).rstrip("/") + "/"))
        return sorted(found, key=lambda m: (-m.count("/"), m))

    async def unmount(self, p: str, *, timeout: float = 30.0) -> str | None:
        """Unmount the board path `p` — never forced, never lazy: a mount in use stays
        where it is. None when done, else why not (busy, no answer in time)."""
        real = os.fsencode(self.path(p))
        try:
            async with asyncio.timeout(timeout):
                code, errno = await asyncio.to_thread(_umount, real)
        except TimeoutError:
            return f"umount gave no answer within {timeout:g} s"
        return None if code == 0 else os.strerror(errno)

    def remove_tree(self, p: str) -> None:
        """Remove the board path `p` and everything below it; refuses (HostError) when a
        mount point is below it: what is mounted there is not the board's to delete."""
        inside = self.mounts_below(p)
        if inside:
            raise HostError(f"{p}: still mounted below it: {', '.join(inside)}")
        shutil.rmtree(self.path(p), ignore_errors=True)

    def disk_usage(self, real_path: Path) -> DiskUsage:
        try:
            du = psutil.disk_usage(str(real_path))
        except OSError as exc:
            raise HostError(f"cannot stat {real_path}: {exc.strerror}") from exc
        return DiskUsage(du.total, du.free, du.percent)


_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _umount(path: bytes) -> tuple[int, int]:
    code = _LIBC.umount2(path, 0)
    return code, ctypes.get_errno()


def _unescape_mount(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in a path as octal escapes."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _die_with_parent() -> None:
    """In the child before exec: if kedge is killed (SIGKILL, OOM), a long command such
    as keadm is killed too instead of running on with nobody reading its output."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class _LineCutter:
    """Bytes in, lines out: each line at most MAX_LINE bytes, a longer one cut with a
    marker saying how much was dropped (a 200 KB line without a newline must neither
    fail the read nor fill memory)."""

    def __init__(self, on_line: Callable[[str], None]) -> None:
        self.on_line = on_line
        self.buffer = bytearray()
        self.dropped = 0

    def feed(self, chunk: bytes) -> None:
        self.buffer += chunk
        while (end := self.buffer.find(b"\n")) >= 0:
            self._emit(bytes(self.buffer[:end]))
            del self.buffer[: end + 1]
        if len(self.buffer) > MAX_LINE:
            self.dropped += len(self.buffer) - MAX_LINE
            del self.buffer[MAX_LINE:]

    def close(self) -> None:
        if self.buffer or self.dropped:
            self._emit(bytes(self.buffer))
        self.buffer.clear()

    def _emit(self, line: bytes) -> None:
        if len(line) > MAX_LINE:
            self.dropped += len(line) - MAX_LINE
            line = line[:MAX_LINE]
        text = line.decode("utf-8", errors="replace").rstrip("\r")
        if self.dropped:
            text += f" [line cut: {self.dropped} more bytes]"
            self.dropped = 0
        self.on_line(text)


async def _kill_and_reap(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(5):
            await proc.wait()


def _env_search_path() -> list[str]:
    dirs = [d for d in os.environ.get("PATH", "").split(":") if d.startswith("/")]
    for d in DEFAULT_SEARCH_PATH:
        if d not in dirs:
            dirs.append(d)
    return dirs

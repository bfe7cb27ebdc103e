"""Fixture boards: a directory standing for a board's root filesystem, with the files,
units and (simulated) binaries a test needs, plus its kedge-agent config file."""

from __future__ import annotations

import contextlib
import json
import os
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[2]

# A memory-enabled cgroup v1 table, as on a stock arm64 Debian kernel.
PROC_CGROUPS = """\
#subsys_name\thierarchy\tnum_cgroups\tenabled
cpuset\t2\t1\t1
cpu\t3\t40\t1
cpuacct\t3\t40\t1
blkio\t4\t40\t1
memory\t5\t80\t1
devices\t6\t40\t1
freezer\t7\t1\t1
pids\t8\t45\t1
"""

ELF_MACHINES = {"amd64": 0x3E, "arm64": 0xB7, "arm": 0x28}


def toml_dumps(data: dict[str, Any]) -> str:
    """Enough TOML for settings files: scalars, lists and one level of tables."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    top = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    tables = [
        f"\n[{k}]\n" + "\n".join(f"{kk} = {value(vv)}" for kk, vv in v.items())
        for k, v in data.items()
        if isinstance(v, dict)
    ]
    return "\n".join(top) + "\n" + "\n".join(tables) + "\n"


@dataclass
class Board:
    root: Path
    config_path: Path

    @classmethod
    def create(cls, base: Path, hostname: str = "board-1") -> Board:
        root = base / "root"
        board = cls(root, base / "agent.toml")
        board.write("/etc/hostname", hostname + "\n")
        board.write("/proc/cgroups", PROC_CGROUPS)
        board.write("/proc/sys/kernel/pid_max", "4194304\n")
        board.write("/dev/kmsg", "")
        for d in ("/etc/systemd/system", "/usr/local/bin", "/var/lib"):
            board.mkdir(d)
        board.configure({})
        return board

    def path(self, p: str) -> Path:
        return self.root / p.lstrip("/")

    def write(self, p: str, text: str | bytes, mode: int = 0o644) -> Path:
        target = self.path(p)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            target.write_bytes(text)
        else:
            target.write_text(text)
        target.chmod(mode)
        return target

    def mkdir(self, p: str) -> Path:
        target = self.path(p)
        target.mkdir(parents=True, exist_ok=True)
        return target

    def symlink(self, p: str, to: str) -> None:
        link = self.path(p)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(to, link)

    def configure(self, settings: dict[str, Any]) -> None:
        self.config_path.write_text(toml_dumps(settings))

    def install_sim(self, name: str, module: str, where: str = "/usr/local/bin") -> Path:
        """A launcher for a simulator module, runnable like the real binary."""
        script = (
            f"#!{sys.executable}\n"
            "import sys\n"
            f"sys.path.insert(0, {str(REPO)!r})\n"
            f"from {module} import main\n"
            f"sys.exit(main(sys.argv[1:], root={str(self.root)!r}))\n"
        )
        return self.write(f"{where}/{name}", script, 0o755)

    def install_keadm(
        self, version: str = "v1.13.0", platform: str = "linux/amd64", cert_wait_s: float = 5
    ) -> None:
        self.install_sim("keadm", "tests.kubeedge_sim.keadm")
        # keadm polls every 10 s of its 300 s wait: the same ratio, scaled down.
        state = {"version": version, "platform": platform, "cert_wait_s": cert_wait_s,
                 "poll_s": cert_wait_s / 30}  # fmt: skip
        self.write("/var/lib/kedge-sim/keadm.json", json.dumps(state))

    def install_systemd(self) -> None:
        """systemctl and journalctl stand-ins (see tests/kubeedge_sim), and the mark of a
        running systemd that kedge looks for (sd_booted(3))."""
        self.path("/run/systemd/system").mkdir(parents=True, exist_ok=True)
        self.install_sim("systemctl", "tests.kubeedge_sim.systemctl", "/usr/bin")
        self.install_sim("journalctl", "tests.kubeedge_sim.journalctl", "/usr/bin")
        self.install_join_tools()

    def install_join_tools(self) -> None:
        """What keadm runs on a systemd board: bash and pidof (its first step), `file` (its
        test for systemd) and sudo (`bash -c "sudo systemctl ..."`)."""
        self.write("/usr/bin/bash", '#!/bin/sh\nexec /bin/bash "$@"\n', 0o755)
        self.write("/usr/bin/sudo", '#!/bin/sh\nexec "$@"\n', 0o755)
        self.write("/usr/bin/pidof", '#!/bin/sh\nexec /usr/bin/pidof "$@"\n', 0o755)
        self.write("/usr/bin/file", '#!/bin/sh\nexec /usr/bin/file "$@"\n', 0o755)

    def inject(self, **faults: object) -> None:
        self.write("/var/lib/kedge-sim/faults.json", json.dumps(faults))

    def processes(self) -> list[psutil.Process]:
        """Processes started from this board (simulated edgecore, units)."""
        mine = []
        for p in psutil.process_iter(["cmdline"]):
            if any(str(self.root) in part for part in p.info["cmdline"] or []):
                mine.append(p)
        return mine

    def stop_processes(self) -> None:
        procs = self.processes()
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(procs, timeout=10)

    def install_elf(self, p: str, arch: str) -> Path:
        """An ELF header for `arch` (the file is not runnable: only its header matters)."""
        header = bytearray(64)
        header[0:4] = b"\x7fELF"
        header[4], header[5], header[6] = 2, 1, 1  # 64-bit, little endian, version 1
        struct.pack_into("<HH", header, 16, 2, ELF_MACHINES[arch])  # ET_EXEC, e_machine
        return self.write(p, bytes(header), 0o755)

"""A real containerd (Debian's package) for a fixture board: its own root, state and
socket under the test's directory, reading the board's /etc/containerd/config.toml, and
restartable through the board's systemctl as containerd.service. The native snapshotter:
no overlay mounts are needed for what the tests do (CRI calls, pulls, image lists)."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.harness.board import Board
from tests.harness.procs import spawn, stop, tail
from tests.harness.wait import wait_for

CONFIG = "/etc/containerd/config.toml"


def config_v2(work: Path, *, systemd_cgroup: bool | None, cri: bool = True,
              sandbox_image: str = "registry.k8s.io/pause:3.6", mirror: str | None = None) -> str:  # fmt: skip
    """containerd 1.x's layout (`version = 2`), as `containerd config default` writes the
    parts kedge reads. cri=False: what Docker's containerd.io package ships
    (`disabled_plugins = ["cri"]`, a version 1 file)."""
    head = [f'root = "{work / "root"}"', f'state = "{work / "state"}"']
    grpc = ["[grpc]", f'  address = "{work / "containerd.sock"}"']
    if not cri:
        return "\n".join([*head, 'disabled_plugins = ["cri"]', *grpc]) + "\n"
    cri_table = 'plugins."io.containerd.grpc.v1.cri"'
    lines = ["version = 2", *head, *grpc, "", f"[{cri_table}]", f'  sandbox_image = "{sandbox_image}"',
             f"[{cri_table}.containerd]", '  snapshotter = "native"',
             f"[{cri_table}.containerd.runtimes.runc]", '  runtime_type = "io.containerd.runc.v2"',
             f"[{cri_table}.containerd.runtimes.runc.options]"]  # fmt: skip
    if systemd_cgroup is not None:
        lines.append(f"  SystemdCgroup = {'true' if systemd_cgroup else 'false'}")
    if mirror:
        lines += [f'[{cri_table}.registry.mirrors."docker.io"]', f'  endpoint = ["{mirror}"]']
    return "\n".join(lines) + "\n"


@dataclass
class Containerd:
    board: Board
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    argv: list[str] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd.sock"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def start(self, config_text: str) -> Containerd:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.board.write(CONFIG, config_text)
        self.argv = ["containerd", "--config", str(self.board.path(CONFIG))]
        self.proc = spawn(self.argv, self.workdir / "containerd.log")
        wait_for(self._serving, timeout=30, what="containerd serving")
        # The board's systemctl restarts it as containerd.service (tests/harness/board.py).
        units = self.board.path("/var/lib/kedge-sim/systemd.json")
        data = json.loads(units.read_text()) if units.exists() else {"units": {}}
        data["units"]["containerd.service"] = {"exec": self.argv, "pid": self.proc.pid}
        self.board.write("/var/lib/kedge-sim/systemd.json", json.dumps(data))
        return self

    def _serving(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"containerd exited: {tail(self.workdir / 'containerd.log')}")
        return self.socket.exists()

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None
        units = self.board.path("/var/lib/kedge-sim/systemd.json")
        if units.exists():  # a restart through the board's systemctl made another process
            pid = json.loads(units.read_text())["units"].get("containerd.service", {}).get("pid")
            if pid:
                subprocess.run(["kill", str(pid)], check=False, timeout=10, capture_output=True)


def cni_archive(path: Path) -> Path:
    """The CNI release's layout: plugins at the archive's top level, built for this board."""
    elf = Path("/bin/true").read_bytes()
    with tarfile.open(path, "w:gz") as tar:
        for name in ("bridge", "host-local", "portmap", "loopback"):
            info = tarfile.TarInfo(f"./{name}")
            info.size, info.mode = len(elf), 0o755
            tar.addfile(info, io.BytesIO(elf))
    return path

"""Debian 12 root filesystems for the tests that boot one (`systemd-nspawn --boot`) or
chroot into one: made once with debootstrap from Debian's mirror and cached as an
uncompressed tarball (seconds to write and unpack, where gzip took minutes on CI's two
cores), unpacked fresh for each use."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.harness.real_binaries import Missing

CACHE = Path("/var/cache/kedge-build")
MIRROR = "http://deb.debian.org/debian"
# What every booted system here needs: the agent's Python, systemd as PID 1, ps/pidof.
BASE = ("python3", "libstdc++6", "systemd", "procps")
# An edge board as keadm meets one on a systemd machine: `file` (keadm's test for
# systemd), sudo (keadm runs `sudo systemctl …`), containerd with runc and the CNI
# plugins, ip for the agent's address checks; docker (Debian's docker.io) for KubeEdge
# up to v1.13, masked on a containerd board (tests/harness/booted_edge.py), and dbus.
EDGE_BOARD = (
    *BASE,
    "file",
    "sudo",
    "containerd",
    "containernetworking-plugins",
    "iproute2",
    "docker.io",
    "dbus",
)


def debootstrapped(dest: Path, name: str, include: tuple[str, ...]) -> Path:
    """A minbase bookworm with `include`, at `dest`; cached as CACHE/<name>.tar."""
    tarball = CACHE / f"{name}.tar"
    if not tarball.exists():
        if shutil.which("debootstrap") is None:
            raise Missing(
                "debootstrap is missing (apt install debootstrap; `make test` installs it)"
            )
        staging = CACHE / f"{name}.staging"
        shutil.rmtree(staging, ignore_errors=True)
        CACHE.mkdir(parents=True, exist_ok=True)
        made = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(include)}",
                "bookworm",
                str(staging),
                MIRROR,
            ],
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
        if made.returncode != 0:
            raise Missing(f"debootstrap of {name} from {MIRROR} failed: {made.stderr[-2000:]}")
        subprocess.run(
            ["tar", "-C", str(staging), "-cf", f"{tarball}.tmp", "."], check=True, timeout=600
        )
        Path(f"{tarball}.tmp").rename(tarball)
        shutil.rmtree(staging, ignore_errors=True)
    dest.mkdir(parents=True)
    subprocess.run(["tar", "-C", str(dest), "-xf", str(tarball)], check=True, timeout=600)
    return dest


def bookworm_chroot(dest: Path) -> Path:
    """A debootstrap minbase bookworm with python3 and systemd."""
    return debootstrapped(dest, "bookworm-minbase", BASE)


def edge_board_root(dest: Path) -> Path:
    """A bookworm edge board before anything KubeEdge: systemd, containerd, docker, file,
    sudo."""
    return debootstrapped(dest, "bookworm-edge-board", EDGE_BOARD)

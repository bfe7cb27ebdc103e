"""A real edge board booted with systemd as PID 1: a Debian 12 root with Debian's
containerd, `file` and sudo (tests/harness/rootfs.py), booted with
`systemd-nspawn --boot` inside the network namespace of a real control plane's Sandbox.
keadm finds `file /sbin/init` succeeding there, so it takes its systemd path: it writes
edgecore.service and runs `sudo systemctl enable/start` — the board shape of the field
guide, beside the one without systemd (tests/harness/real_edge.py).

What this machine's sandbox needs beyond a plain boot, and why:
- nspawn mounts the cgroup v1 controllers read-only; runc must create the pods'
  cgroups, so they are remounted writable inside the board (cgroups are not namespaced
  here in any case: one board at a time, and the Sandbox removes the pods' cgroups);
- it mounts /proc/sys read-only too, where edgecore's kubelet sets vm.overcommit_memory
  and kernel.panic ("Failed to start ContainerManager … read-only file system"): also
  remounted writable;
- nspawn's seccomp filter refuses the kernel keyring runc gives each container
  (`@keyring` is allowed back), and gives no /dev/kmsg, which the kubelet opens as it
  starts (tests/harness/nspawn.py binds it in; the board without it is the `kmsg`
  check's case);
- the hostname resolves through /etc/hosts, as Debian's installer writes it: otherwise
  each of keadm's three `sudo systemctl` calls waits for DNS that is not there;
- the project's checkout is bound read-only at the same path, so `kedge-agent` runs
  from the test's own virtualenv (Debian 12's Python inside and out); the agent's
  configuration and state live in a writable folder bound at /kedge-board."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kedge.kubeedge import Release
from tests.harness.nspawn import Container, booted
from tests.harness.real_binaries import REPO, Missing, release
from tests.harness.real_edge import (
    AGENT,
    CNI_CONF,
    ENDPOINT,
    NAMESPACE,
    PAUSE_IMAGE,
    SOCKET,
    installation_package,
    mosquitto_stand_in,
    pause_image,
)
from tests.harness.rootfs import edge_board_root
from tests.harness.sandbox import Sandbox

INSIDE = Path("/kedge-board")  # the agent's configuration and state, inside the board


def docker_daemon_json(systemd_cgroup: bool) -> str:
    """Debian's docker.service with the driver asked for, vfs storage (no overlay inside
    the board) and no networking of its own (the board shares the sandbox's network)."""
    driver = "systemd" if systemd_cgroup else "cgroupfs"
    return json.dumps(
        {
            "exec-opts": [f"native.cgroupdriver={driver}"],
            "storage-driver": "vfs",
            "bridge": "none",
            "iptables": False,
            "ip6tables": False,
            "ip-masq": False,
            "ip-forward": False,
        }
    )


def containerd_config(systemd_cgroup: bool) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    lines = [
        "version = 2",
        "[grpc]",
        f'  address = "{SOCKET}"',
        f"[{cri}]",
        f'  sandbox_image = "{PAUSE_IMAGE}"',
        "  restrict_oom_score_adj = true",
        f"[{cri}.containerd]",
        '  snapshotter = "native"',
        f"[{cri}.containerd.runtimes.runc]",
        '  runtime_type = "io.containerd.runc.v2"',
        f"[{cri}.containerd.runtimes.runc.options]",
        f"  SystemdCgroup = {'true' if systemd_cgroup else 'false'}",
        f"[{cri}.cni]",
        '  bin_dir = "/usr/lib/cni"',
        '  conf_dir = "/etc/cni/net.d"',
    ]
    return "\n".join(lines) + "\n"


def _writable_kernel_interfaces(init: int) -> None:
    """Remount the board's read-only cgroup v1 controllers and /proc/sys writable (see
    the module)."""
    for line in Path(f"/proc/{init}/mountinfo").read_text().splitlines():
        fields = line.split()
        point, options = fields[4], fields[5]
        fstype = fields[fields.index("-") + 1]
        kernel = point == "/proc/sys" or (
            fstype == "cgroup" and point.startswith("/sys/fs/cgroup/")
        )
        if kernel and "ro" in options.split(","):
            subprocess.run(
                ["nsenter", "-t", str(init), "-m", "--", "mount", "-o", "remount,rw,bind", point],
                check=True,
                capture_output=True,
                timeout=30,
            )


@dataclass
class BootedEdge:
    """One booted board; `version`'s keadm in /usr/local/bin, its images in containerd."""

    box: Sandbox
    board: Container
    work: Path  # on this machine: bound at INSIDE
    version: str

    def run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.board.run(*argv, timeout=timeout)

    def check(self, *argv: str, timeout: float = 120) -> str:
        return self.board.run(*argv, timeout=timeout, check=True).stdout

    @property
    def docker(self) -> bool:
        return Release(self.version).docker

    def configure_agent(self, cloudcore: str, token: str, node: str, **more: str) -> None:
        runtime = (
            {"runtime": "docker"}
            if self.docker
            else {"runtime": "containerd", "remote_runtime_endpoint": ENDPOINT}
        )
        settings = {
            "node_name": node,
            "cloudcore": cloudcore,
            "token": token,
            "kubeedge_version": self.version,
            **runtime,
            "state_dir": str(INSIDE / "state"),
            **more,
        }
        text = "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
        (self.work / "agent.toml").write_text(text)

    def kedge(self, *args: str, timeout: float = 600) -> tuple[int, dict[str, Any], float]:
        """`kedge-agent ARGS --config … --json` on the board: (exit code, report, seconds)."""
        began = time.monotonic()
        config = str(INSIDE / "agent.toml")
        done = self.run(AGENT, *args, "--config", config, "--json", timeout=timeout)
        took = time.monotonic() - began
        try:
            report = json.loads(done.stdout)
        except ValueError:
            raise AssertionError(
                f"kedge-agent {args[0]}: exit {done.returncode}, no JSON report:"
                f"\n{done.stdout}\n{done.stderr}"
            ) from None
        return done.returncode, report, took

    def keadm_join(self, cloudcore: str, token: str, node: str) -> tuple[int, str]:
        """The bare `keadm join` of this release on the board: (exit code, output)."""
        done = self.run(
            "/usr/local/bin/keadm",
            "join",
            f"--cloudcore-ipport={cloudcore}",
            f"--token={token}",
            f"--kubeedge-version={self.version}",
            f"--edgenode-name={node}",
            *(
                ["--runtimetype=docker", "--with-mqtt=false"]
                if self.docker
                else [f"--remote-runtime-endpoint={ENDPOINT}"]
            ),
            "--cgroupdriver=cgroupfs",
            timeout=300,
        )
        return done.returncode, done.stdout + done.stderr

    def unit(self, prop: str) -> str:
        return self.board.show("edgecore.service", prop)


def _prepare(root: Path, version: str, node: str, systemd_cgroup: bool) -> list[str]:
    """The board's files before it boots; the image archives to load, inside it."""
    (root / "etc/hostname").write_text(f"{node}\n")
    with (root / "etc/hosts").open("a") as hosts:
        hosts.write(f"127.0.1.1\t{node}\n")
    images = root / "root/images"
    images.mkdir(parents=True)
    archives = {"installation-package": installation_package(version)}
    if Release(version).docker:
        (root / "etc/docker").mkdir(parents=True, exist_ok=True)
        (root / "etc/docker/daemon.json").write_text(docker_daemon_json(systemd_cgroup))
        # v1.13's keadm asks for these too, even with --with-mqtt=false.
        archives |= {
            "pause": pause_image("docker.io/kubeedge/pause:3.6"),
            "mosquitto": mosquitto_stand_in(),
        }
    else:
        for unit in ("docker.service", "docker.socket"):  # installed, not this board's
            (root / "etc/systemd/system" / unit).symlink_to("/dev/null")
        (root / "etc/containerd").mkdir(parents=True, exist_ok=True)
        (root / "etc/containerd/config.toml").write_text(containerd_config(systemd_cgroup))
        (root / "etc/cni/net.d").mkdir(parents=True, exist_ok=True)
        (root / "etc/cni/net.d/10-kedge-test.conflist").write_text(json.dumps(CNI_CONF))
        archives["pause"] = pause_image()
    for name, archive in archives.items():
        (images / f"{name}.tar").write_bytes(archive)
    shutil.copy(release(version)["keadm"], root / "usr/local/bin/keadm")
    return [f"/root/images/{name}.tar" for name in archives]


@contextmanager
def booted_edge(
    box: Sandbox, work: Path, version: str, node: str, *, systemd_cgroup: bool = False
) -> Iterator[BootedEdge]:
    """A booted board named `node` in `box`'s network, on the runtime `version` drives
    (docker up to v1.13, containerd after), its runc on the systemd cgroup driver or
    cgroupfs; powered off after."""
    for tool in ("systemd-nspawn", "nsenter"):
        if shutil.which(tool) is None:
            raise Missing(f"{tool} is missing (apt install systemd-container; `make test` does)")
    docker = Release(version).docker
    root = edge_board_root(work / "root")
    archives = _prepare(root, version, node, systemd_cgroup)
    agent = work / "agent"
    agent.mkdir()
    extra = (
        f"--network-namespace-path=/proc/{box.init}/ns/net",
        "--system-call-filter=@keyring",
        "--capability=all",
        f"--bind-ro={REPO}",
        f"--bind={agent}:{INSIDE}",
    )
    with booted(root, work / "console.log", *extra, machine=f"kedge-{node}") as board:
        _writable_kernel_interfaces(board.init_pid)
        edge = BootedEdge(box, board, agent, version)
        load = (
            ("docker", "load", "-i")
            if docker
            else ("ctr", "-a", SOCKET, "-n", NAMESPACE, "images", "import")
        )
        for archive in archives:
            edge.check(*load, archive, timeout=300)
        yield edge

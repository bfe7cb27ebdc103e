"""A real edge board inside a Sandbox, on the runtime its release drives: from v1.14 a
private containerd (Debian's) on /run/containerd/containerd.sock with the CNI plugins of
Debian's containernetworking-plugins; up to v1.13 a private dockerd (Debian's docker.io)
on /run/docker.sock, without networking, which edgecore's dockershim drives. The images a
real `keadm join` asks for are built here from the real binaries — no registry: keadm
skips a pull when the image is already there.

- `kubeedge/installation-package:<release>`: busybox (sh, sleep, cp: keadm's copy step
  runs `sleep infinity` and `cp` in it) and the release's edgecore at
  /usr/local/bin/edgecore, where keadm copies it from;
- the pause image (containerd's sandbox image; v1.13's `kubeedge/pause:3.6`): the static
  `pause` binary;
- v1.13's keadm also asks for `eclipse-mosquitto:1.6.15` (even with --with-mqtt=false):
  busybox stands in, never run.

keadm decides that systemd runs when `file /sbin/init` succeeds; inside the sandbox no
systemd runs, so `file` is made to fail there and keadm takes its nohup path."""

from __future__ import annotations

import io
import json
import shutil
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kedge.kubeedge import Release
from tests.harness.dockerd import saved_image
from tests.harness.real_binaries import Missing, binary, release
from tests.harness.sandbox import Sandbox
from tests.harness.wait import wait_for

DOCKER_SOCKET = "/run/docker.sock"
SOCKET = "/run/containerd/containerd.sock"
ENDPOINT = f"unix://{SOCKET}"
PAUSE_IMAGE = "registry.k8s.io/pause:3.9"
BUSYBOX = Path("/bin/busybox")
CNI_BIN = Path("/usr/lib/cni")
NAMESPACE = "k8s.io"
AGENT = str(Path(sys.executable).with_name("kedge-agent"))


def _tar(files: dict[str, tuple[bytes, int]], links: dict[str, str]) -> bytes:
    """A layer: files (path -> (data, mode)) and symlinks (path -> target)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs = sorted({str(Path(p).parent) for p in [*files, *links]} - {"."})
        for d in dirs:
            for part in [str(p) for p in reversed(Path(d).parents) if str(p) != "."] + [d]:
                if part not in tar.getnames():
                    info = tarfile.TarInfo(part)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
        for path, (data, mode) in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
        for path, target in links.items():
            info = tarfile.TarInfo(path)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def installation_package(version: str) -> bytes:
    if not BUSYBOX.exists():
        raise Missing(f"{BUSYBOX} is missing (apt install busybox-static; `make test` installs it)")
    edgecore = release(version)["edgecore"].read_bytes()
    layer = _tar(
        {"bin/busybox": (BUSYBOX.read_bytes(), 0o755), "usr/local/bin/edgecore": (edgecore, 0o755)},
        {f"bin/{tool}": "busybox" for tool in ("sh", "sleep", "cp", "ls")},
    )
    # As the real image (FROM ubuntu: a command, no entrypoint): keadm's docker copy step
    # gives its own command, `/bin/sh -c "cp …"`, which an entrypoint would swallow.
    return saved_image(
        layer, f"docker.io/kubeedge/installation-package:{version}", "amd64", cmd=["/bin/sh"]
    )


def pause_image(ref: str = PAUSE_IMAGE) -> bytes:
    layer = _tar({"pause": (binary("tools/pause").read_bytes(), 0o755)}, {})
    return saved_image(layer, ref, "amd64", ["/pause"])


PROBE_IMAGE = "docker.io/kedge/probe:1"


def probe_image() -> bytes:
    """A pod's image made here (no registry): busybox sleeping."""
    layer = _tar({"bin/busybox": (BUSYBOX.read_bytes(), 0o755)}, {"bin/sleep": "busybox"})
    return saved_image(layer, PROBE_IMAGE, "amd64", ["/bin/sleep", "3600"])


def mosquitto_stand_in() -> bytes:
    layer = _tar({"bin/busybox": (BUSYBOX.read_bytes(), 0o755)}, {"bin/sh": "busybox"})
    return saved_image(layer, "docker.io/library/eclipse-mosquitto:1.6.15", "amd64", ["/bin/sh"])


def containerd_config(work: Path) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return "\n".join([
        "version = 2", f'root = "{work / "root"}"', 'state = "/run/containerd"',
        "[grpc]", f'  address = "{SOCKET}"',
        f"[{cri}]", f'  sandbox_image = "{PAUSE_IMAGE}"', "  restrict_oom_score_adj = true",
        f"[{cri}.containerd]", '  snapshotter = "native"',
        f"[{cri}.containerd.runtimes.runc]", '  runtime_type = "io.containerd.runc.v2"',
        f"[{cri}.cni]", f'  bin_dir = "{CNI_BIN}"', '  conf_dir = "/etc/cni/net.d"',
    ]) + "\n"  # fmt: skip


CNI_CONF = {
    "cniVersion": "0.4.0", "name": "kedge-test",
    "plugins": [{"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]]}},
                {"type": "loopback"}],
}  # fmt: skip


@dataclass
class RealEdge:
    """One edge board in `box` on containerd."""

    box: Sandbox
    work: Path
    version: str

    @property
    def docker(self) -> bool:
        return Release(self.version).docker

    def start(self) -> RealEdge:
        self.work.mkdir(parents=True, exist_ok=True)
        if self.docker:
            self._start_dockerd()
        else:
            self._start_containerd()
        # keadm's test for systemd (`file /sbin/init`) fails here: no systemd runs inside.
        no_file = self.work / "file"
        no_file.write_text("#!/bin/sh\nexit 1\n")
        no_file.chmod(0o755)
        self.box.check("mount", "--bind", str(no_file), "/usr/bin/file")
        return self

    def _start_containerd(self) -> None:
        if not CNI_BIN.exists():
            raise Missing(f"{CNI_BIN} is missing (apt install containernetworking-plugins)")
        # Where a board keeps them, private to the sandbox: kedge's checks read them there.
        root = self.box.work / "root"
        (root / "etc/cni/net.d/10-kedge-test.conflist").write_text(json.dumps(CNI_CONF))
        config = root / "etc/containerd/config.toml"
        config.write_text(containerd_config(self.work))
        self.box.spawn(["containerd", "--config", "/etc/containerd/config.toml"],
                       self.work / "containerd.log")  # fmt: skip
        wait_for(lambda: self.box.run("ctr", "--address", SOCKET, "version", timeout=10).returncode == 0,
                 timeout=30, what="containerd in the sandbox")  # fmt: skip
        for name, archive in (("pause", pause_image()),
                              ("installation-package", installation_package(self.version))):  # fmt: skip
            path = self.work / f"{name}.tar"
            path.write_bytes(archive)
            self.box.check("ctr", "--address", SOCKET, "-n", NAMESPACE, "images", "import",
                           str(path), timeout=120)  # fmt: skip

    def _start_dockerd(self) -> None:
        (self.work / "daemon.json").write_text("{}")
        self.box.spawn(["dockerd", "--config-file", str(self.work / "daemon.json"),
                        "--data-root", str(self.work / "docker"), "--storage-driver=vfs",
                        "--bridge=none", "--iptables=false", "--ip6tables=false",
                        "--ip-masq=false", "--ip-forward=false"],
                       self.work / "dockerd.log")  # fmt: skip
        docker = ("docker", "-H", f"unix://{DOCKER_SOCKET}")
        wait_for(lambda: self.box.run(*docker, "version", timeout=10).returncode == 0,
                 timeout=60, what="dockerd in the sandbox")  # fmt: skip
        for name, archive in (("pause", pause_image("docker.io/kubeedge/pause:3.6")),
                              ("mosquitto", mosquitto_stand_in()),
                              ("installation-package", installation_package(self.version))):  # fmt: skip
            path = self.work / f"{name}.tar"
            path.write_bytes(archive)
            self.box.check(*docker, "load", "-i", str(path), timeout=120)

    def import_image(self, name: str, archive: bytes) -> None:
        """An image archive into the board's containerd (the pods' namespace)."""
        path = self.work / f"{name}.tar"
        path.write_bytes(archive)
        ctr = ("ctr", "--address", SOCKET, "-n", NAMESPACE)
        self.box.check(*ctr, "images", "import", str(path), timeout=120)

    def configure_agent(self, cloudcore: str, token: str, node: str, **more: str) -> Path:
        """kedge-agent's configuration for this board (keadm where a board has it)."""
        keadm = self.box.work / "root/usr/local/bin/keadm"
        if not keadm.exists():
            shutil.copy(release(self.version)["keadm"], keadm)
        config = self.work / "agent.toml"
        runtime = ({"runtime": "docker", "docker_host": f"unix://{DOCKER_SOCKET}"} if self.docker
                   else {"runtime": "containerd", "remote_runtime_endpoint": ENDPOINT})  # fmt: skip
        settings = {
            "node_name": node, "cloudcore": cloudcore, "token": token,
            "kubeedge_version": self.version, **runtime,
            "state_dir": str(self.work / "state"), **more,
        }  # fmt: skip
        config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items()))
        return config

    def kedge(self, *args: str, timeout: float = 600) -> tuple[int, dict[str, Any], float]:
        """`kedge-agent ARGS --config … --json` on this board: (exit code, the report,
        seconds)."""
        began = time.monotonic()
        done = self.box.run(AGENT, *args, "--config", str(self.work / "agent.toml"), "--json",
                            timeout=timeout)  # fmt: skip
        took = time.monotonic() - began
        try:
            report = json.loads(done.stdout)
        except ValueError:
            raise AssertionError(f"kedge-agent {args[0]}: exit {done.returncode}, no JSON report:"
                                 f"\n{done.stdout}\n{done.stderr}") from None  # fmt: skip
        return done.returncode, report, took

    def kedge_check(self, cloudcore: str, token: str, node: str) -> dict[str, dict[str, Any]]:
        """`kedge-agent check --json` on this board: each check's result by id."""
        self.configure_agent(cloudcore, token, node)
        _, report, _ = self.kedge("check", timeout=180)
        return {c["id"]: c for c in report["checks"]}

    def keadm_join(
        self, cloudcore: str, token: str, node: str, timeout: float = 300
    ) -> tuple[int, str, float]:
        """The bare `keadm join` of this release: (exit code, output, seconds)."""
        keadm = release(self.version)["keadm"]
        began = time.monotonic()
        runtime = (["--runtimetype=docker", "--with-mqtt=false"] if self.docker
                   else [f"--remote-runtime-endpoint={ENDPOINT}"])  # fmt: skip
        done = self.box.run(str(keadm), "join", f"--cloudcore-ipport={cloudcore}", f"--token={token}",
                            f"--kubeedge-version={self.version}", f"--edgenode-name={node}",
                            *runtime, "--cgroupdriver=cgroupfs", timeout=timeout)  # fmt: skip
        return done.returncode, done.stdout + done.stderr, time.monotonic() - began

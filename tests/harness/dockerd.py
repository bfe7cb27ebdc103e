"""A real dockerd on its own socket and data root (vfs storage, no networking), and
helpers that speak the Engine API to it: import, push, pull, remove images."""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import socket
import subprocess
import tarfile
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from tests.harness.pidns import PidNamespace
from tests.harness.procs import spawn, stop, tail
from tests.harness.wait import wait_for


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("docker", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def api(
    sock: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 120.0,
) -> tuple[int, bytes]:
    conn = _UnixHTTPConnection(sock, timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _stream_error(body: bytes) -> str | None:
    """Docker reports pull/push failures inside a 200 JSON stream."""
    for line in body.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict) and msg.get("error"):
            return str(msg["error"])
    return None


@dataclass
class Dockerd:
    cgroup_driver: str = "cgroupfs"
    mirrors: list[str] = field(default_factory=list)
    config_file: Path | None = None  # e.g. a board's /etc/docker/daemon.json
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kd", dir="/tmp")))
    proc: subprocess.Popen[bytes] | None = None
    pidns: PidNamespace | None = None  # a board's own PID namespace, which outlives it

    @property
    def socket(self) -> str:
        return str(self.workdir / "docker.sock")

    @property
    def log(self) -> Path:
        return self.workdir / "dockerd.log"

    @property
    def argv(self) -> list[str]:
        config = self.config_file or self.workdir / "daemon.json"
        return [
            "dockerd",
            "--config-file", str(config),
            "--data-root", str(self.workdir / "data"),
            "--exec-root", str(self.workdir / "exec"),
            "--pidfile", str(self.workdir / "dockerd.pid"),
            "-H", f"unix://{self.socket}",
            "--iptables=false", "--ip6tables=false", "--bridge=none", "--storage-driver=vfs",
        ]  # fmt: skip

    def start(self, timeout: float = 60.0) -> Dockerd:
        if self.config_file is None:
            config: dict[str, Any] = {"registry-mirrors": self.mirrors}
            if self.cgroup_driver == "systemd":
                config["exec-opts"] = ["native.cgroupdriver=systemd"]
            (self.workdir / "daemon.json").write_text(json.dumps(config))
        self.proc = spawn(self.pidns.argv(*self.argv) if self.pidns else self.argv, self.log)
        wait_for(self._ready, timeout=timeout, what=f"dockerd on {self.socket}")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"dockerd exited: {tail(self.log)}")
        return api(self.socket, "GET", "/_ping", timeout=2)[0] == 200

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc, timeout=30)
            self.proc = None
        pidfile = self.workdir / "dockerd.pid"
        if self.pidns is not None:  # the PID in the file is the namespace's: its owner stops it
            pidfile.unlink(missing_ok=True)
        elif pidfile.exists():  # restarted by someone else (the systemctl simulator)
            with contextlib.suppress(ValueError, psutil.NoSuchProcess):
                proc = psutil.Process(int(pidfile.read_text().strip()))
                proc.terminate()
                wait_for(lambda: not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE,
                         timeout=30, what="dockerd to stop")  # fmt: skip
            pidfile.unlink(missing_ok=True)

    def info(self) -> dict[str, Any]:
        _, body = api(self.socket, "GET", "/info", timeout=10)
        result: dict[str, Any] = json.loads(body)
        return result

    # -- images ------------------------------------------------------------
    def import_tar(self, tarball: bytes, ref: str, platform: str | None = None) -> None:
        """An image from a root filesystem tarball (`platform`: the os/arch it says it is
        built for, as docker records it; default this machine's)."""
        repo, tag = ref.rsplit(":", 1)
        fields = {
            "fromSrc": "-",
            "repo": repo,
            "tag": tag,
            **({"platform": platform} if platform else {}),
        }
        query = urllib.parse.urlencode(fields)
        status, body = api(
            self.socket,
            "POST",
            f"/images/create?{query}",
            tarball,
            {"Content-Type": "application/x-tar"},
        )
        if status != 200 or _stream_error(body):
            raise RuntimeError(f"import {ref}: {status} {body[:300]!r}")

    def push(self, ref: str) -> None:
        repo, tag = ref.rsplit(":", 1)
        auth = base64.urlsafe_b64encode(b"{}").decode()
        status, body = api(
            self.socket, "POST", f"/images/{repo}/push?tag={tag}", b"", {"X-Registry-Auth": auth}
        )
        if status != 200 or _stream_error(body):
            raise RuntimeError(f"push {ref}: {status} {body[:300]!r}")

    def pull(self, ref: str) -> None:
        repo, tag = ref.rsplit(":", 1)
        query = urllib.parse.urlencode({"fromImage": repo, "tag": tag})
        status, body = api(self.socket, "POST", f"/images/create?{query}", b"")
        error = _stream_error(body)
        if status != 200 or error:
            raise RuntimeError(f"pull {ref}: {status} {error or body[:300]!r}")

    def has_image(self, ref: str) -> bool:
        return api(self.socket, "GET", f"/images/{ref}/json", timeout=10)[0] == 200

    def load_image(
        self, rootfs: bytes, ref: str, arch: str, entrypoint: list[str] | None = None
    ) -> None:
        """An image that says it is built for `arch` (dockerd's import ignores a platform;
        a `docker save` archive carries its config): POST /images/load."""
        status, body = api(self.socket, "POST", "/images/load?quiet=1",
                           saved_image(rootfs, ref, arch, entrypoint),
                           {"Content-Type": "application/x-tar"})  # fmt: skip
        if status != 200 or _stream_error(body):
            raise RuntimeError(f"load {ref}: {status} {body[:300]!r}")

    def remove_image(self, ref: str) -> None:
        api(self.socket, "DELETE", f"/images/{ref}?force=1", timeout=30)


def tiny_rootfs_tar(marker: str) -> bytes:
    """A one-file root filesystem: enough to be a real, distinct image."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = marker.encode()
        info = tarfile.TarInfo("kedge-test-image")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def mirror_ref(registry: str, ref: str) -> str:
    """Where a Docker Hub image lives in a registry acting as the Hub's mirror."""
    repo = ref if "/" in ref.split(":", 1)[0] else f"library/{ref}"
    return f"{registry}/{repo}"


def seed_registry(seeder: Dockerd, registry: str, refs: list[str]) -> None:
    """Put tiny distinct images under the Hub names `refs` into the mirror registry."""
    for ref in refs:
        target = mirror_ref(registry, ref)
        seeder.import_tar(tiny_rootfs_tar(ref), target)
        seeder.push(target)


def saved_image(rootfs: bytes, ref: str, arch: str, entrypoint: list[str] | None = None,
                cmd: list[str] | None = None) -> bytes:  # fmt: skip
    """A `docker save` archive of one image: one layer (`rootfs`), a config naming `arch`
    (and the entrypoint or command, for an image a runtime will run). `ctr images import`
    reads it too."""
    import hashlib
    import json as _json
    import tarfile

    diff_id = hashlib.sha256(rootfs).hexdigest()
    run = {**({"Entrypoint": entrypoint} if entrypoint else {}), **({"Cmd": cmd} if cmd else {})}
    config = _json.dumps({"architecture": arch, "os": "linux", "config": run,
                          "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]}}).encode()  # fmt: skip
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = _json.dumps(
        [{"Config": config_name, "RepoTags": [ref], "Layers": [f"{diff_id}/layer.tar"]}]
    ).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in (
            (f"{diff_id}/layer.tar", rootfs),
            (config_name, config),
            ("manifest.json", manifest),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()

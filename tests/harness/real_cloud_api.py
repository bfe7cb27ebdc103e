"""`kedge-cloud-api serve` beside a real control plane, inside its Sandbox (the API
server is only reachable there): its kubectl is the machine's, pointed at the
sandbox's admin kubeconfig; its commands are run in the sandbox too."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.cloud_api import SERVER
from tests.harness.control_plane import ControlPlane
from tests.harness.sandbox import ADDRESS, Sandbox
from tests.harness.wait import wait_for

PORT = 8080


@dataclass
class RealCloudApi:
    box: Sandbox
    state: Path

    @property
    def url(self) -> str:
        return f"http://{ADDRESS}:{PORT}"

    def cli(self, *args: str, timeout: float = 300) -> tuple[int, Any]:
        """`kedge-cloud-api ARGS --json` against this service: (exit code, the answer)."""
        token = str(self.state / "admin.token")
        argv = (SERVER, *args, "--api", self.url, "--token-file", token, "--json")
        done = self.box.run(*argv, timeout=timeout)
        try:
            return done.returncode, json.loads(done.stdout)
        except ValueError:
            raise AssertionError(
                f"kedge-cloud-api {args[0]}: exit {done.returncode}, no JSON answer:"
                f"\n{done.stdout}\n{done.stderr}"
            ) from None


def start_cloud_api(box: Sandbox, plane: ControlPlane, work: Path) -> RealCloudApi:
    work.mkdir(parents=True, exist_ok=True)
    state = work / "state"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "KEDGE_CLOUD_KUBECONFIG": str(plane.kubeconfig)}
    argv = [SERVER, "serve", "--listen", f"{ADDRESS}:{PORT}", "--state-dir", str(state)]
    box.spawn(argv, work / "server.log", env=env)
    api = RealCloudApi(box, state)
    healthz = ("curl", "-sf", "--max-time", "5", f"{api.url}/healthz")
    wait_for(
        lambda: box.run(*healthz, timeout=10).returncode == 0,
        timeout=60,
        what="kedge-cloud-api in the sandbox",
    )
    return api


@contextmanager
def scheduler_stand_in(plane: ControlPlane) -> Iterator[None]:
    """Bind pods pinned by hostname while the block runs (ControlPlane.bind_pods_by_hostname)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(0.5):
            plane.bind_pods_by_hostname()

    thread = threading.Thread(target=loop, name="scheduler-stand-in", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=60)

"""A simulated Kubernetes master on its own network: a network namespace joined to the
test's by a veth pair (the master is 198.18.0.2, the test side 198.18.0.1, as a cloud
VM and the boards' LAN), a fixture root with the keadm and kubectl simulators, the
simulated cluster, and a real `kedge-cloud-api serve` process inside the namespace,
so the addresses it sees are the master's and the boards reach it over the link."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.board import Board, toml_dumps
from tests.harness.http import call_json
from tests.harness.netns import Netns, netns
from tests.harness.wait import wait_for
from tests.kubeedge_sim import cluster

MASTER_IP, LAN_IP = "198.18.0.2", "198.18.0.1"
API_PORT = 8080
CLI = str(Path(sys.executable).with_name("kedge-cloud-api"))


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, timeout=30, capture_output=True)


@contextmanager
def lan(ns: Netns) -> Iterator[str]:
    """veth: MASTER_IP/24 inside the namespace, LAN_IP/24 on this side; yields the
    inside link's name (to cut it: ns.run("ip", "link", "set", name, "down"))."""
    outside, inside = f"kv{uuid.uuid4().hex[:8]}", f"kp{uuid.uuid4().hex[:8]}"
    _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
    try:
        _ip("link", "set", inside, "netns", ns.name)
        _ip("addr", "add", f"{LAN_IP}/24", "dev", outside)
        _ip("link", "set", outside, "up")
        ns.run("ip", "addr", "add", f"{MASTER_IP}/24", "dev", inside).check_returncode()
        ns.run("ip", "link", "set", inside, "up").check_returncode()
        yield inside
    finally:
        subprocess.run(
            ["ip", "link", "delete", outside], check=False, timeout=30, capture_output=True
        )


@dataclass
class Master:
    ns: Netns
    root: Board
    kubeconfig: Path
    state: Path
    config: Path
    proc: subprocess.Popen[bytes] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    link: str = ""  # the master's side of the LAN veth

    url = f"http://{MASTER_IP}:{API_PORT}"

    @property
    def token(self) -> str:
        return (self.state / "admin.token").read_text().strip()

    @property
    def log(self) -> Path:
        return self.state.parent / "cloud-api.log"

    def cluster(self) -> dict[str, Any]:
        return cluster.load(str(self.kubeconfig))

    def edit_cluster(self, **changes: Any) -> None:
        with cluster.update(str(self.kubeconfig)) as data:
            data.update(changes)

    def start(self, **settings: Any) -> Master:
        """Start the API with these settings, or (none given) with those of the last start."""
        self.settings = settings or self.settings
        base = {"kubeconfig": str(self.kubeconfig), "ready_timeout_s": 20, "init_timeout_s": 60}
        self.config.write_text(toml_dumps({**base, **self.settings}))
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.ns.argv(
                    CLI,
                    "serve",
                    "--config",
                    str(self.config),
                    "--listen",
                    f"0.0.0.0:{API_PORT}",
                    "--state-dir",
                    str(self.state),
                    "--root",
                    str(self.root.root),
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"kedge-cloud-api exited {self.proc.returncode}: {self.log.read_text()}"
                )
            return self.call("GET", "/healthz")[0] == 200

        wait_for(up, timeout=30, what="the cloud API")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)

    def call(
        self, method: str, path: str, body: Any = None, *, admin: bool = True
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        status, _, answer = call_json(
            method, self.url + path, data=data, token=self.token if admin else None
        )
        return status, answer

    def cli(
        self, *args: str, timeout: float = 180, capture: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """The kedge-cloud-api CLI from the boards' side of the link (capture=False: output
        goes to this process's)."""
        return subprocess.run(
            [CLI, *args, "--api", self.url, "--token-file", str(self.state / "admin.token")],
            capture_output=capture,
            text=True,
            timeout=timeout,
            check=False,
        )

    def wait_job(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            status, job = self.call("GET", f"/api/v1/jobs/{job_id}")
            return job if status == 200 and job["state"] != "running" else None

        return wait_for(done, timeout=timeout, what=f"job {job_id}", interval=0.2)


@contextmanager
def master(tmp_path: Path) -> Iterator[Master]:
    """A master with a one-node tainted cluster (k8s v1.23.17) whose node is MASTER_IP."""
    root = Board.create(tmp_path / "master")
    root.install_keadm("v1.13.0")
    root.install_sim("kubectl", "tests.kubeedge_sim.kubectl")
    kubeconfig = root.path("/root/.kube/config")
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    data = json.loads(json.dumps(cluster.DEFAULT))
    data["nodes"][0]["ip"] = MASTER_IP
    cluster.save(str(kubeconfig), data)
    state = tmp_path / "cloud-api-state"
    with netns() as ns, lan(ns) as link:
        m = Master(ns, root, kubeconfig, state, tmp_path / "cloud-api.toml", link=link)
        try:
            yield m
        finally:
            m.stop()
            with cluster.update(str(kubeconfig)) as d:
                cluster.stop_pod(d)
            root.stop_processes()


def install_cloudcore(m: Master) -> None:
    """cloudcore installed through the running API (POST /api/v1/cloudcore), waited for."""
    status, body = m.call("POST", "/api/v1/cloudcore", {"advertise_address": [MASTER_IP]})
    assert status == 202, body
    assert m.wait_job(body["job"]["id"])["state"] == "succeeded"

"""The simulated cri-dockerd (tests/kubeedge_sim/cri_dockerd.py) for a fixture board, in
front of a real dockerd, with the systemd unit its reference install writes (kedge reads
--pod-infra-container-image from it)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.harness.board import REPO, Board
from tests.harness.procs import spawn, stop, tail
from tests.harness.wait import wait_for

UNIT = "/etc/systemd/system/cri-docker.service"


@dataclass
class CriDockerd:
    board: Board
    workdir: Path
    docker_socket: str
    sandbox_image: str = "registry.k8s.io/pause:3.9"
    proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"unix://{self.workdir / 'cri-dockerd.sock'}"

    def start(self) -> CriDockerd:
        self.workdir.mkdir(parents=True, exist_ok=True)
        flags = [f"--container-runtime-endpoint={self.endpoint}",
                 f"--docker-endpoint=unix://{self.docker_socket}",
                 f"--pod-infra-container-image={self.sandbox_image}"]  # fmt: skip
        self.board.write(UNIT, "[Unit]\nDescription=CRI Interface for Docker Application Container Engine\n\n"
                         f"[Service]\nType=notify\nExecStart=/usr/bin/cri-dockerd {' '.join(flags)}\n")  # fmt: skip
        argv = [sys.executable, "-m", "tests.kubeedge_sim.cri_dockerd", *flags,
                f"--cni-conf-dir={self.board.path('/etc/cni/net.d')}"]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.proc = spawn(argv, self.workdir / "cri-dockerd.log", env=env)
        wait_for(self._serving, timeout=30, what="cri-dockerd serving")
        return self

    def _serving(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"cri-dockerd exited: {tail(self.workdir / 'cri-dockerd.log')}")
        return (self.workdir / "cri-dockerd.sock").exists()

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None

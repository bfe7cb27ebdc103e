"""A real Docker registry (Debian's docker-registry) on loopback."""

from __future__ import annotations

import http.client
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.harness.procs import free_port, spawn, stop, tail
from tests.harness.wait import wait_for

CONFIG = """\
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
"""


@dataclass
class Registry:
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def start(self) -> Registry:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.yml"
        config.write_text(CONFIG.format(root=self.workdir / "data", port=self.port))
        log = self.workdir / "registry.log"
        self.proc = spawn(["docker-registry", "serve", str(config)], log)
        wait_for(self._ready, timeout=20, what=f"docker-registry on {self.address}")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {tail(self.workdir / 'registry.log')}")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
        try:
            conn.request("GET", "/v2/")
            return conn.getresponse().status == 200
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None


def start_registry(workdir: Path) -> Registry:
    return Registry(free_port(), workdir).start()

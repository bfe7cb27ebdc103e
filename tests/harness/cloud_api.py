"""`kedge-cloud-api serve` as a real process on loopback, and calls to it."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.harness.http import call_json
from tests.harness.procs import free_port
from tests.harness.wait import wait_for

SERVER = str(Path(sys.executable).with_name("kedge-cloud-api"))


@dataclass
class Api:
    url: str
    state: Path
    proc: subprocess.Popen[bytes]

    @property
    def token(self) -> str:
        return (self.state / "admin.token").read_text().strip()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        return call_json(
            method, self.url + path, data=data, token=token, headers=headers, timeout=10
        )


def start(state: Path, *extra: str) -> Api:
    port = free_port()
    state.mkdir(parents=True, exist_ok=True)
    with (state.parent / "server.log").open("ab") as log:
        proc = subprocess.Popen(
            [SERVER, "serve", "--listen", f"127.0.0.1:{port}", "--state-dir", str(state), *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    api = Api(f"http://127.0.0.1:{port}", state, proc)

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(
                f"kedge-cloud-api exited {proc.returncode}: {proc.stdout.read() if proc.stdout else ''!r}"
            )
        return api.call("GET", "/healthz")[0] == 200

    wait_for(up, timeout=30, what="the API")
    return api

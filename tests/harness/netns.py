"""A private network namespace: its own loopback, no routes out. Ports checks run in
one so that what they see is exactly what the test put there."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.harness.procs import spawn, stop
from tests.harness.wait import wait_for

LISTENER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind((sys.argv[2], int(sys.argv[1])))
s.listen()
print("listening", flush=True)
time.sleep(600)
"""


class Netns:
    def __init__(self, name: str) -> None:
        self.name = name

    def argv(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]

    def run(
        self, *cmd: str, timeout: float = 60, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*cmd), capture_output=True, text=True, timeout=timeout, check=False, env=env
        )

    @contextmanager
    def listener(self, port: int, workdir: Path, host: str = "127.0.0.1") -> Iterator[int]:
        """A python process listening on host:port inside the namespace."""
        log = workdir / f"listener-{port}.log"
        proc = spawn(self.argv(sys.executable, "-c", LISTENER, str(port), host), log)
        try:
            wait_for(lambda: "listening" in log.read_text(), timeout=20, what=f"listener on {port}")
            yield proc.pid
        finally:
            stop(proc)


@contextmanager
def netns() -> Iterator[Netns]:
    name = f"kedge-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=30)
    try:
        ns = Netns(name)
        subprocess.run(ns.argv("ip", "link", "set", "lo", "up"), check=True, timeout=30)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=30)

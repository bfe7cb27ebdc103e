"""Image pulls that break half-way: the registry killed mid-pull, and dockerd killed
mid-pull. A real dockerd pulls a 32 MB image from a real docker-registry through a
throttling relay on loopback (so the pull lasts seconds and can be cut in the middle);
`kedge-agent fix --only images` must say what failed, count no half-pulled image as
present, and succeed once the parts are back."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import HUB_IMAGES
from tests.harness.agentd import AGENT
from tests.harness.board import Board
from tests.harness.dockerd import Dockerd, mirror_ref, tiny_rootfs_tar
from tests.harness.procs import free_port
from tests.harness.registry import Registry
from tests.harness.wait import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.docker]
BIG = next(ref for ref in HUB_IMAGES if "installation-package" in ref)
RATE = 4 << 20  # bytes per second, registry to dockerd
CUT_AFTER = 4 << 20


class SlowRelay:
    """A TCP relay in front of the registry, at most RATE bytes/s towards dockerd."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.relayed = 0
        self._stop = threading.Event()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                down, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                down.close()
                continue
            for src, dst, slow in ((down, up, False), (up, down, True)):
                t = threading.Thread(target=self._pipe, args=(src, dst, slow), daemon=True)
                t.start()
                self._threads.append(t)

    def _pipe(self, src: socket.socket, dst: socket.socket, slow: bool) -> None:
        src.settimeout(30)
        try:
            while not self._stop.is_set():
                data = src.recv(64 * 1024)
                if not data:
                    break
                dst.sendall(data)
                if slow:
                    self.relayed += len(data)
                    time.sleep(len(data) / RATE)  # the relay's pace, not a wait for a condition
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self._stop.set()
        self._server.close()
        for t in self._threads:
            t.join(5)


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Registry, SlowRelay, Dockerd]]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    registry = Registry(free_port(), tmp_path / "registry").start()
    relay = SlowRelay(registry.port)
    docker = Dockerd()  # a short work directory: containerd's socket path is limited
    config = docker.workdir / "daemon.json"
    config.write_text(json.dumps({"registry-mirrors": [f"http://127.0.0.1:{relay.port}"],
                                  "max-download-attempts": 1}))  # fmt: skip
    docker.config_file = config
    docker.start()
    try:
        for ref in HUB_IMAGES:
            target = mirror_ref(registry.address, ref)
            docker.import_tar(_big_tar() if ref == BIG else tiny_rootfs_tar(ref), target)
            docker.push(target)
            docker.remove_image(target)
        yield registry, relay, docker
    finally:
        relay.close()
        docker.stop()
        registry.stop()


def _big_tar() -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = os.urandom(32 << 20)  # random: the layer's gzip cannot shrink it
        info = tarfile.TarInfo("payload")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _fix(board: Board) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [AGENT, "fix", "--yes", "--json", "--only", "images", "--root", str(board.root),
         "--config", str(board.config_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _configure(board: Board, docker: Dockerd) -> None:
    board.configure({"docker_host": docker.socket, "pull_retries": 1, "pull_backoff_s": 0,
                     "thresholds": {"docker_min_free_mb": 1}})  # fmt: skip


def _finish(proc: subprocess.Popen[str]) -> tuple[int, dict[str, Any], str]:
    out, err = proc.communicate(timeout=180)
    return proc.returncode, json.loads(out), err


def _fix_cut_by(board: Board, relay: SlowRelay, docker: Dockerd,
                kill: Callable[[], None]) -> tuple[int, dict[str, Any], str]:  # fmt: skip
    """Run fix, call `kill` once the big pull is under way, return fix's outcome."""
    _configure(board, docker)
    proc = _fix(board)
    wait_for(lambda: relay.relayed >= CUT_AFTER, timeout=60, what="the pull to be under way")
    kill()
    return _finish(proc)


def _sigkill(proc: subprocess.Popen[bytes] | None) -> None:
    assert proc is not None
    # Its children too: dockerd's containerd is a service of its own on a real board.
    children = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
            child.wait(30)


def test_registry_killed_mid_pull(board: Board, parts: tuple[Registry, SlowRelay, Dockerd]) -> None:
    registry, relay, docker = parts
    rc, doc, err = _fix_cut_by(board, relay, docker, lambda: _sigkill(registry.proc))
    assert rc == 1, err
    problems = doc["details"]["problems"]
    assert any(BIG in p["problem"] for p in problems), problems
    assert "Traceback" not in err
    assert doc["summary"] == "no changes; still failing: images"
    assert not docker.has_image(BIG), "a half-pulled image is not an image"
    registry.start()  # the same port and storage: the registry is back
    rc, doc, err = _finish(_fix(board))
    assert rc == 0, err
    assert docker.has_image(BIG)


def test_dockerd_killed_mid_pull(board: Board, parts: tuple[Registry, SlowRelay, Dockerd]) -> None:
    _, relay, docker = parts
    rc, doc, err = _fix_cut_by(board, relay, docker, lambda: _sigkill(docker.proc))
    assert rc == 1, err
    assert "Traceback" not in err
    problem = doc["details"]["problems"][0]
    assert problem["problem"].startswith(f"cannot pull {BIG}: ")
    assert "docker stopped answering on" in problem["problem"]
    assert "cannot connect to" not in problem["problem"], "the other images were not tried"
    assert problem["remedy"].startswith("Check docker: systemctl status docker")
    assert doc["summary"] == "no changes; still failing: images"
    (docker.workdir / "dockerd.pid").unlink(missing_ok=True)
    docker.start()
    assert not docker.has_image(BIG), "a half-pulled image is not an image"
    rc, doc, err = _finish(_fix(board))
    assert rc == 0, err
    assert docker.has_image(BIG)


def test_keadm_reports_a_broken_pull_as_success_and_fails_a_step_later(
    board: Board, parts: tuple[Registry, SlowRelay, Dockerd], tmp_path: Path
) -> None:
    """util/image.go@v1.13.0 throws the pull stream away: a pull cut in the middle prints
    "Successfully pulled" and the join fails at the next step with the daemon's "No such
    image". kedge must name that cause, whatever order keadm pulled in (a Go map walk)."""
    from agent.diagnose import recognise
    from tests.kubeedge_sim.cloudcore import CloudcoreSim
    from tests.kubeedge_sim.pki import CloudcorePKI

    registry, relay, docker = parts
    board.install_systemd()
    for ref in HUB_IMAGES:  # the small two are there: only the big pull can break
        if ref != BIG:
            docker.pull(ref)
    with CloudcoreSim(CloudcorePKI.create(["127.0.0.1"])) as cc:
        proc = subprocess.Popen(
            [str(board.path("/usr/local/bin/keadm")), "join", f"--cloudcore-ipport={cc.cloudcore}",
             f"--certport={cc.cert_port}", f"--token={cc.pki.token()}", "--runtimetype=docker",
             "--remote-runtime-endpoint=unix:///var/run/dockershim.sock", "--cgroupdriver=cgroupfs"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={"DOCKER_HOST": f"unix://{docker.socket}", "PATH": "/usr/bin:/bin"},
        )  # fmt: skip
        wait_for(lambda: relay.relayed >= CUT_AFTER, timeout=60, what="keadm's pull under way")
        _sigkill(registry.proc)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert f"Pulling {BIG} ...\n" in out
    assert f"Successfully pulled {BIG}\n" in out  # keadm's word, not the truth
    assert "pull Images failed" not in err
    assert (
        "Error: edge node join failed: copy resources failed: Error response from daemon: "
        f"No such image: {BIG}" in err
    )
    (cause,) = recognise(out, err)
    assert cause.id == "image-missing"
    assert cause.summary.startswith(f"the image {BIG} is not on the board")

"""Session-wide real components (registry, two dockerds, SNTP) and per-test boards."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog

from agent.cli import main
from kedge.kubeedge import join_images
from kedge.wire import CheckReport, CheckResult
from tests.harness.agentd import start_daemon  # noqa: F401 - a fixture for every test module
from tests.harness.board import Board
from tests.harness.dockerd import Dockerd, seed_registry
from tests.harness.exclusive import Busy, exclusive
from tests.harness.registry import Registry, start_registry
from tests.harness.sealing import TEST_COMMAND_KEY
from tests.harness.sntp import SntpServer
from tests.kubeedge_sim.cloudcore import CloudcoreSim
from tests.kubeedge_sim.pki import CloudcorePKI

HUB_IMAGES = join_images("v1.13.0")


def _need_root_tools(*tools: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (run `make test` as root)")
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (`make test` installs them)")


@pytest.fixture(scope="session", autouse=True)
def _one_run_at_a_time() -> Iterator[None]:
    """The machine's test lock for the whole session; what a killed run left is removed."""
    try:
        with exclusive("make test") as removed:
            if removed:
                print(f"\nremoved what a killed run left: {', '.join(removed)}")
            yield
    except Busy as exc:
        pytest.exit(str(exc), returncode=2)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the settings they set."""
    for name in list(os.environ):
        if name.startswith("KEDGE_AGENT_") or name in ("DOCKER_HOST", "NO_COLOR"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    _need_root_tools("docker-registry")
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def dockerd_systemd(registry: Registry) -> Iterator[Dockerd]:
    """A dockerd using the systemd cgroup driver, holding KubeEdge v1.13's three images,
    pulled for real through the loopback registry acting as Docker Hub's mirror."""
    _need_root_tools("dockerd")
    daemon = Dockerd("systemd", [registry.url]).start()
    try:
        seed_registry(daemon, registry.address, HUB_IMAGES)
        for ref in HUB_IMAGES:
            daemon.pull(ref)
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def mirror(registry: Registry, dockerd_systemd: Dockerd) -> Registry:
    """The registry, once it holds KubeEdge v1.13's images under their Docker Hub names."""
    return registry


@pytest.fixture(scope="session")
def dockerd_cgroupfs(registry: Registry, dockerd_systemd: Dockerd) -> Iterator[Dockerd]:
    """A dockerd with the default cgroupfs driver and no images."""
    daemon = Dockerd("cgroupfs", [registry.url]).start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="session")
def ntp() -> Iterator[SntpServer]:
    with SntpServer(offset_s=0.0) as server:
        yield server


@pytest.fixture
def cloudcore() -> Iterator[CloudcoreSim]:
    with CloudcoreSim(CloudcorePKI.create(["127.0.0.1"])) as sim:
        yield sim


@pytest.fixture
def board(tmp_path: Path) -> Iterator[Board]:
    b = Board.create(tmp_path)
    b.install_keadm("v1.13.0")
    yield b
    b.stop_processes()


@pytest.fixture
def board_docker(board: Board, mirror: Registry) -> Iterator[Dockerd]:
    """A dockerd reading the board's /etc/docker/daemon.json, restartable through the
    board's systemctl like docker.service."""
    board.install_systemd()
    daemon_json = {
        "registry-mirrors": [mirror.url],
        "log-level": "warn",
        "max-concurrent-downloads": 2,
    }
    board.write("/etc/docker/daemon.json", json.dumps(daemon_json, indent=4) + "\n", 0o640)
    d = Dockerd(config_file=board.path("/etc/docker/daemon.json")).start()
    assert d.proc is not None
    unit = {"exec": d.argv, "pidfile": str(d.workdir / "dockerd.pid"), "pid": d.proc.pid}
    board.write("/var/lib/kedge-sim/systemd.json", json.dumps({"units": {"docker.service": unit}}))
    board.configure({"docker_host": d.socket, "thresholds": {"docker_min_free_mb": 1}})
    yield d
    d.stop()


@pytest.fixture
def ready_board(
    board: Board, dockerd_systemd: Dockerd, ntp: SntpServer, cloudcore: CloudcoreSim
) -> Board:
    """A board on which every check can pass."""
    board.install_join_tools()
    board.write("/etc/resolv.conf", "nameserver 192.0.2.53\n")
    board.configure(ready_settings(dockerd_systemd, ntp, cloudcore))
    return board


def ready_settings(
    docker: Dockerd, ntp: SntpServer, cc: CloudcoreSim, **extra: Any
) -> dict[str, Any]:
    return {
        "node_name": "board-1",
        "docker_host": f"unix://{docker.socket}",
        "ntp_servers": [ntp.address],
        "cloudcore": cc.cloudcore,
        "cloudcore_cert_port": cc.cert_port,
        "token": cc.pki.token(),
        "command_key": TEST_COMMAND_KEY,  # as enrollment would set it
        # The machine's own load is not what these tests are about (test_check_board covers it).
        "thresholds": {"docker_min_free_mb": 1, "cpu_sample_s": 0.1, "max_cpu_used_pct": 100},
        **extra,
    }


@dataclass
class AgentRun:
    rc: int
    out: str
    err: str

    def report(self) -> CheckReport:
        return CheckReport.model_validate_json(self.out)

    def result(self, check_id: str) -> CheckResult:
        for c in self.report().checks:
            if c.id == check_id:
                return c
        raise AssertionError(f"no {check_id} in {self.out}")


AgentRunner = Callable[..., AgentRun]


@pytest.fixture
def agent(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> AgentRunner:
    """Run kedge-agent in-process against a board: agent(board, "check", "--json")."""

    def run(board: Board | None, *args: str, env: dict[str, str] | None = None) -> AgentRun:
        capsys.readouterr()
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
        argv = list(args)
        if board is not None:
            argv += ["--root", str(board.root), "--config", str(board.config_path)]
        rc = main(argv)
        captured = capsys.readouterr()
        return AgentRun(rc, captured.out, captured.err)

    return run


def statuses(run: AgentRun) -> dict[str, str]:
    return {c.id: c.status.value for c in run.report().checks}


def dump(run: AgentRun) -> str:
    return (
        json.dumps(json.loads(run.out), indent=1) if run.out.startswith("{") else run.out + run.err
    )


def check_one(agent: AgentRunner, board: Board, check_id: str) -> CheckResult:
    """Run a single check (and what it needs) on the board; return its result."""
    return agent(board, "check", "--json", "--only", check_id).result(check_id)


REPO = Path(__file__).resolve().parents[1]


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (`make test` installs them)")


@pytest.fixture(scope="session")
def debs() -> dict[str, Path]:
    """The Debian packages, built once per test session (packaging/build)."""
    need("dpkg-buildpackage", "dh", "lintian", "aarch64-linux-gnu-strip")
    build = subprocess.run([str(REPO / "packaging" / "build"), "--dist", "bookworm", "--arch", "all"],
                           capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    return {
        p.name.split("_")[0] + "_" + p.name.rsplit("_", 1)[1][:-4]: p
        for p in (REPO / "dist").glob("*.deb")
    }


@pytest.fixture
def logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """The structlog events of the test, at every level: the configuration an earlier
    test (a CLI run in this process) left behind may filter below warning and cache
    its loggers, so it is reset for the test and again after it."""
    structlog.reset_defaults()
    with structlog.testing.capture_logs() as captured:
        yield captured
    structlog.reset_defaults()

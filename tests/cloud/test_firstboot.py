"""Zero-touch first boot against the simulated master (its own network namespace): a
board with a seed on its boot partition and no other input enrolls, checks, fixes,
joins; and each way it can go wrong is reported, bounded and resumable."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.settings import load_settings
from tests.conftest import AgentRunner
from tests.harness.board import Board
from tests.harness.dockerd import Dockerd
from tests.harness.firstboot import QUICK, give_identity, place_seed, progress, timeline
from tests.harness.master import MASTER_IP, Master, master
from tests.harness.sntp import SntpServer
from tests.test_join import remove_containers

pytestmark = pytest.mark.netns
SERIAL, MAC = "RK3000-0A1B2C3D", "02:42:ac:11:00:02"
NODE = "rk3000-rk30000a1b2c3d"


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Master]:
    with master(tmp_path) as m:
        m.start()
        assert m.cli("init", "--advertise-address", MASTER_IP).returncode == 0
        yield m


@pytest.fixture
def flashed(board: Board, dockerd_systemd: Dockerd, ntp: SntpServer) -> Iterator[Board]:
    """A board as it comes off the image: the agent installed, nothing enrolled."""
    board.install_systemd()
    give_identity(board, SERIAL, MAC)
    board.configure({
        "docker_host": f"unix://{dockerd_systemd.socket}", "ntp_servers": [ntp.address],
        "join_settle_s": 1, "state_dir": "/var/lib/kedge-agent", "firstboot": QUICK,
        "thresholds": {"docker_min_free_mb": 1, "cpu_sample_s": 0.1, "max_cpu_used_pct": 100},
    })  # fmt: skip
    yield board
    board.stop_processes()
    remove_containers(dockerd_systemd)


def make_seed(cloud: Master, tmp_path: Path, *args: str, name: str = "seed.toml") -> str:
    out = tmp_path / name
    made = cloud.cli("seed", "create", "--node-name", "rk3000-{serial}", "--label", "site=plant-3",
                     "--out", str(out), *args)  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    return out.read_text()


def firstboot(board: Board) -> subprocess.Popen[str]:
    """`kedge-agent firstboot` as the unit starts it: a process of its own."""
    argv = [str(Path(sys.executable).with_name("kedge-agent")), "firstboot",
            "--root", str(board.root), "--config", str(board.config_path)]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 240) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def test_a_fresh_board_with_a_seed_joins_with_no_other_input(
    cloud: Master, flashed: Board, tmp_path: Path, agent: AgentRunner
) -> None:
    seed_file = place_seed(
        flashed, make_seed(cloud, tmp_path, "--uses", "1", "--allow-remote", "fix")
    )
    secret = next(
        ln.split('"')[1] for ln in seed_file.read_text().splitlines() if ln.startswith("secret")
    )
    rc, out = finish(firstboot(flashed))
    assert rc == 0, out
    assert not seed_file.exists()  # scrubbed off the boot partition
    state = flashed.path("/var/lib/kedge-agent")
    assert not (state / "seed.secret").exists()  # and spent: the board keeps no copy
    assert secret not in "".join(
        p.read_text(errors="replace") for p in state.iterdir() if p.is_file()
    )
    p = progress(flashed)
    assert p is not None
    assert (p["node"], p["phase"], p["state"]) == (NODE, "joined", "done")
    assert [t["phase"] for t in p["timeline"]] == [
        "seed", "network", "clock", "enrolling", "checking", "joining", "starting", "joined"]  # fmt: skip
    print("\n".join(timeline(p)))
    joined = json.loads((state / "join.json").read_text())
    assert "--labels=site=plant-3" in joined["argv"]  # the seed's labels reach keadm join
    settings = load_settings(flashed.config_path, root=flashed.root)
    assert (settings.allow_remote, settings.labels) == (["fix"], {"site": "plant-3"})
    boards = json.loads(cloud.cli("boards", "--json").stdout)
    assert [(b["node_name"], b["serial"], b["joined"]) for b in boards] == [
        (NODE, "rk30000a1b2c3d", True)]  # fmt: skip
    status = agent(flashed, "status")
    assert "first boot: joined (done) since" in status.out
    # booted again: nothing repeats
    rc, out = finish(firstboot(flashed))
    assert (rc, out.strip().splitlines()[-1].split(" (")[0].split(": finished")[0]) == (
        0,
        "firstboot",
    )
    assert "nothing to do" in out
    assert progress(flashed) == p

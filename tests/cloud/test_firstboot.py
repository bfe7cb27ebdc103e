"""Zero-touch first boot against the simulated master (its own network namespace): a
board with a seed on its boot partition and no other input enrolls, checks, fixes,
joins; and each way it can go wrong is reported, bounded and resumable."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.settings import load_settings
from tests.conftest import AgentRunner
from tests.harness.board import Board
from tests.harness.dockerd import Dockerd
from tests.harness.firstboot import (
    QUICK,
    agent_unit,
    give_identity,
    place_seed,
    progress,
    timeline,
)
from tests.harness.master import LAN_IP, MASTER_IP, Master, master
from tests.harness.mosquitto import Mosquitto
from tests.harness.sntp import SntpServer
from tests.harness.wait import wait_for
from tests.kubeedge_sim.chronyc import OFFSET_FILE
from tests.test_join import remove_containers

pytestmark = pytest.mark.netns
SERIAL, MAC = "RK3000-0A1B2C3D", "02:42:ac:11:00:02"
NODE = "rk3000-rk30000a1b2c3d"


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Master]:
    """The master with its broker as `broker init` sets it up: enrollment hands every
    board a broker identity, which the daemon the first boot starts connects with."""
    with master(tmp_path) as m:
        broker = Mosquitto(tmp_path / "mosquitto", state_dir=m.state, board_host=LAN_IP).start()
        try:
            m.start(mqtt={"host": LAN_IP})
            assert m.cli("init", "--advertise-address", MASTER_IP).returncode == 0
            yield m
        finally:
            broker.stop()


@pytest.fixture
def flashed(board: Board, dockerd_systemd: Dockerd) -> Iterator[Board]:
    """A board as it comes off the image: the agent installed (kedge-agent.service
    included), nothing enrolled; its clock is what its own SNTP server says (the offset
    in OFFSET_FILE, which chronyc steps)."""
    board.install_systemd()
    agent_unit(board)
    board.install_sim("chronyc", "tests.kubeedge_sim.chronyc", "/usr/bin")
    board.write(OFFSET_FILE, "0\n")
    give_identity(board, SERIAL, MAC)
    with SntpServer(offset_file=board.path(OFFSET_FILE)) as ntp:
        configure(board, dockerd_systemd, ntp)
        yield board
        board.stop_processes()
        remove_containers(dockerd_systemd)


def configure(board: Board, docker: Dockerd, ntp: SntpServer, **firstboot: float) -> None:
    board.configure({
        "docker_host": f"unix://{docker.socket}", "ntp_servers": [ntp.address],
        "join_settle_s": 1, "state_dir": "/var/lib/kedge-agent", "firstboot": QUICK | firstboot,
        "thresholds": {"docker_min_free_mb": 1, "cpu_sample_s": 0.1, "max_cpu_used_pct": 100},
    })  # fmt: skip


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


def kill_when(proc: subprocess.Popen[str], board: Board, ready: Callable[[], object]) -> str:
    """Power loss once `ready()`: the first boot and everything the board started, killed.
    Answers the phase the record was in."""
    wait_for(lambda: ready() or proc.poll() is not None, timeout=120, what="the phase to kill in")
    assert proc.poll() is None, proc.communicate()[0]
    phase = (progress(board) or {}).get("phase", "?")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    board.stop_processes()  # keadm, edgecore: all of it goes with the power
    return str(phase)


def in_phase(board: Board, phase: str, state: str | None = None) -> bool:
    p = progress(board)
    return p is not None and p["phase"] == phase and (state is None or p["state"] == state)


def test_power_lost_in_each_phase_resumes_there_and_joins(
    cloud: Master, flashed: Board, dockerd_systemd: Dockerd, tmp_path: Path
) -> None:
    """Each phase held long enough to lose power in it: the cloud API down (network), the
    clock 10 minutes behind with the time service silent (clock), the secret asking for
    approval (enrolling), keadm running (joining). Every restart resumes where it was."""
    place_seed(flashed, make_seed(cloud, tmp_path, "--uses", "1", "--approval", "pending"))
    flashed.write(OFFSET_FILE, "600\n")
    with SntpServer(offset_file=flashed.path(OFFSET_FILE)) as ntp:
        configure(flashed, dockerd_systemd, ntp, clock_wait_s=600)
        cloud.stop()
        killed = [
            kill_when(firstboot(flashed), flashed, lambda: in_phase(flashed, "network", "waiting"))
        ]
        cloud.start()
        killed.append(
            kill_when(firstboot(flashed), flashed, lambda: in_phase(flashed, "clock", "waiting"))
        )
        configure(flashed, dockerd_systemd, ntp, clock_wait_s=0.5)  # the clock then gets stepped
        killed.append(
            kill_when(
                firstboot(flashed), flashed, lambda: in_phase(flashed, "enrolling", "waiting")
            )
        )
        assert cloud.cli("boards", "approve", NODE).returncode == 0
        proc = firstboot(flashed)
        killed.append(kill_when(proc, flashed, lambda: any("keadm" in " ".join(p.cmdline()) and "join" in p.cmdline()
                                                          for p in flashed.processes())))  # fmt: skip
        assert killed == ["network", "clock", "enrolling", "joining"]
        rc, out = finish(firstboot(flashed))
        assert rc == 0, out
    assert "cleaning up the unfinished join" in out
    p = progress(flashed)
    assert p is not None
    assert (p["phase"], p["state"]) == ("joined", "done")
    phases = [t["phase"] for t in p["timeline"]]
    # a resumed phase starts again, the ones before it are not repeated
    assert phases == [
        "seed",
        "network",
        "clock",
        "enrolling",
        "checking",
        "joining",
        "starting",
        "joined",
    ]
    assert float(flashed.path(OFFSET_FILE).read_text()) == 0  # stepped by the clock phase
    clock = next(t for t in p["timeline"] if t["phase"] == "clock")
    assert clock["outcome"].startswith("stepped the clock: it was 600.0 s behind NTP")
    boards = json.loads(cloud.cli("boards", "--json").stdout)
    assert [(b["node_name"], b["enrollments"]) for b in boards] == [(NODE, 1)]


def enroll_requests(cloud: Master) -> list[int]:
    """The statuses the API answered POST /api/v1/enroll with, from its request log."""
    lines = [json.loads(ln) for ln in cloud.log.read_text().splitlines() if ln.startswith("{")]
    return [ln["status"] for ln in lines if ln.get("path") == "/api/v1/enroll"]


def test_the_cloud_api_unreachable_for_a_while(
    cloud: Master, flashed: Board, tmp_path: Path
) -> None:
    place_seed(flashed, make_seed(cloud, tmp_path, "--uses", "1"))
    cloud.stop()
    proc = firstboot(flashed)
    wait_for(lambda: (progress(flashed) or {}).get("attempt", 0) >= 3 or proc.poll() is not None,
             timeout=60, what="three tries at the cloud API")  # fmt: skip
    p = progress(flashed)
    assert p is not None
    assert (p["phase"], p["state"]) == ("network", "waiting")
    assert p["summary"].startswith(f"cannot reach the cloud API at {cloud.url}:")
    cloud.start()
    rc, out = finish(proc)
    assert rc == 0, out
    assert enroll_requests(cloud) == [200]  # nothing asked before the API answered


def test_a_used_up_or_expired_secret_is_said_once_and_a_corrected_seed_is_taken(
    cloud: Master, flashed: Board, tmp_path: Path
) -> None:
    used = make_seed(cloud, tmp_path, "--uses", "1", name="used.toml")
    secret = next(ln.split('"')[1] for ln in used.splitlines() if ln.startswith("secret"))
    other = {
        "node_name": "another-board",
        "secret": secret,
        "arch": "arm64",
        "agent_version": "0.1.0",
    }
    assert cloud.call("POST", "/api/v1/enroll", other, admin=False)[0] == 200  # its one use
    place_seed(flashed, used)
    rc, out = finish(firstboot(flashed))
    assert rc == 2, out  # blocked: the unit does not restart it (RestartPreventExitStatus=2)
    p = progress(flashed)
    assert p is not None
    assert (p["phase"], p["state"]) == ("enrolling", "blocked")
    assert "this enrollment secret is used up" in p["summary"]
    assert "write a corrected seed onto the boot partition" in p["remedy"]
    assert enroll_requests(cloud) == [200, 403]  # asked once, not hammered

    expired = make_seed(cloud, tmp_path, "--uses", "5", "--ttl", "1s", name="expired.toml")
    wait_for(lambda: all(s["expires_at"] < time.time() for s in json.loads(
        cloud.cli("secret", "list", "--json").stdout)[1:]), timeout=10, what="the secret to expire")  # fmt: skip
    place_seed(flashed, expired)  # a corrected seed... that is no better
    rc, out = finish(firstboot(flashed))
    assert rc == 2, out
    assert "a new seed is on the boot partition" not in out  # taken at start, not mid-wait
    assert "this enrollment secret is expired" in (progress(flashed) or {})["summary"]
    assert enroll_requests(cloud) == [200, 403, 403]

    place_seed(flashed, make_seed(cloud, tmp_path, "--uses", "1", name="good.toml"))
    rc, out = finish(firstboot(flashed))
    assert rc == 0, out
    assert enroll_requests(cloud) == [200, 403, 403, 200]
    p = progress(flashed)
    assert p is not None
    assert (p["phase"], p["state"]) == ("joined", "done")


def test_a_reflashed_board_enrolls_again_under_its_name_with_its_history(
    cloud: Master, flashed: Board, tmp_path: Path
) -> None:
    text = make_seed(cloud, tmp_path, "--uses", "2")
    place_seed(flashed, text)
    rc, out = finish(firstboot(flashed))
    assert rc == 0, out
    first = json.loads(cloud.cli("boards", "--json").stdout)[0]
    # Re-flashed: a new image, the same hardware. The old image's state is gone (its key
    # with it), so the name cannot be proven; the serial recognises the board.
    flashed.stop_processes()
    for leftover in ("/var/lib/kedge-agent", "/etc/kubeedge", "/var/lib/kubeedge"):
        shutil.rmtree(flashed.path(leftover), ignore_errors=True)
    flashed.path("/etc/systemd/system/edgecore.service").unlink(missing_ok=True)
    place_seed(flashed, text)
    rc, out = finish(firstboot(flashed))
    assert rc == 0, out
    again = json.loads(cloud.cli("boards", "--json").stdout)
    assert [(b["node_name"], b["enrollments"], b["first_enrolled"]) for b in again] == [
        (NODE, 2, first["enrolled_at"])]  # fmt: skip
    listed = cloud.cli("boards").stdout
    assert "(enrolled 2 times, first" in listed

    # Another board claiming the name (another serial, a valid secret) is still refused.
    fresh = cloud.cli("secret", "create", "--uses", "1").stdout.strip()
    body = {"node_name": NODE, "secret": fresh, "arch": "arm64", "agent_version": "0.1.0",
            "serial": "rk3000ffff0000", "macs": ["0642ac110002"]}  # fmt: skip
    status, answer = cloud.call("POST", "/api/v1/enroll", body, admin=False)
    assert (status, answer["error"]["code"]) == (409, "name_taken")


def test_an_unknown_serial_waits_for_approval_then_joins(
    cloud: Master, flashed: Board, tmp_path: Path
) -> None:
    place_seed(flashed, make_seed(cloud, tmp_path, "--uses", "3", "--serial", "RK3000-00000001"))
    proc = firstboot(flashed)
    wait_for(lambda: in_phase(flashed, "enrolling", "waiting") or proc.poll() is not None,
             timeout=60, what="the board to wait for approval")  # fmt: skip
    p = progress(flashed)
    assert p is not None
    assert "serial rk30000a1b2c3d is not on this secret's allowlist" in p["summary"]
    assert f"kedge-cloud-api boards approve {NODE}" in p["summary"]
    pending = cloud.cli("boards", "pending").stdout
    assert pending.startswith(NODE)
    assert "rk30000a1b2c3d" in pending
    assert (
        json.loads(cloud.cli("secret", "list", "--json").stdout)[0]["uses_left"] == 3
    )  # nothing spent
    approved = cloud.cli("boards", "approve", NODE)
    assert approved.returncode == 0, approved.stderr
    rc, out = finish(proc)
    assert rc == 0, out
    listed = json.loads(cloud.cli("secret", "list", "--json").stdout)[0]
    assert (listed["uses_left"], listed["boards"], listed["pending"]) == (2, [NODE], [])
    assert cloud.cli("boards", "pending").stdout.strip() == "no board waits for approval"
    assert cloud.cli("boards", "approve", "nobody").returncode != 0


def test_the_first_boot_is_done_only_when_its_daemon_runs(
    tmp_path: Path, flashed: Board, agent: AgentRunner
) -> None:
    """Issue 25, finding 7: with no broker to report to, `kedge-agent run` exits at once;
    the first boot used to say "joined (done)" and exit 0 all the same."""
    with master(tmp_path) as m:
        m.start()  # no [mqtt]: enrollment hands the board no broker
        assert m.cli("init", "--advertise-address", MASTER_IP).returncode == 0
        place_seed(flashed, make_seed(m, tmp_path, "--uses", "1"))
        rc, out = finish(firstboot(flashed))
    assert rc == 1, out
    p = progress(flashed)
    assert p is not None
    assert (p["phase"], p["state"]) == ("starting", "blocked")
    assert p["summary"].startswith("kedge-agent.service exited: ")
    assert "mqtt.host is not set" in p["summary"]  # the daemon's own words
    assert "journalctl -u kedge-agent.service" in p["remedy"]
    assert "firstboot: joined" not in out
    assert "first boot: starting (blocked)" in agent(flashed, "status").out

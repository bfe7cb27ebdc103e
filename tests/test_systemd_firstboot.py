"""The first-boot unit for real: kedge-agent installed with apt into a Debian 12 root, a
seed placed on its boot path, the system booted with systemd as PID 1
(`systemd-nspawn --boot`) — and with nobody typing anything the board ends joined to the
simulated master and reporting; booted again, nothing repeats.

What the container gets besides the package is what cannot run here for real: the
keadm and edgecore simulators (tests/kubeedge_sim, run from this checkout, bound
read-only at the same path; keadm starts edgecore through the container's real
systemd, as `bash -c "sudo systemctl ..."`), and this machine's test dockerd as its
/run/docker.sock. It shares this machine's network, so it reaches the simulated master
and the broker across the demo's LAN.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, need
from tests.harness.demo import broker_init
from tests.harness.dockerd import Dockerd
from tests.harness.master import LAN_IP, MASTER_IP, Master, master
from tests.harness.mosquitto import Mosquitto
from tests.harness.nspawn import booted
from tests.harness.rootfs import bookworm_chroot
from tests.harness.sntp import SntpServer
from tests.harness.wait import wait_for
from tests.test_join import remove_containers
from tests.test_packaging import chroot, publish

pytestmark = [pytest.mark.packaging, pytest.mark.netns]
NODE = "rk3000-boot"


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[tuple[Master, Mosquitto]]:
    """The master as the demo has it: cloudcore, TLS broker with one identity per board."""
    with master(tmp_path) as m:
        broker = Mosquitto(tmp_path / "mosquitto", state_dir=m.state, board_host=LAN_IP)
        try:
            broker_init(m, broker)
            broker.start()
            m.start(mqtt={"host": LAN_IP}, fleet={"kube_poll_s": 1, "batch_wait_s": 0.05})
            assert m.cli("init", "--advertise-address", MASTER_IP).returncode == 0
            yield m, broker
        finally:
            broker.stop()


def launcher(root: Path, name: str, module: str) -> None:
    """A simulator as the board's own program: this checkout's Python, the board is "/"."""
    path = root / "usr/local/bin" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(REPO)!r})\n"
                    f"from {module} import main\nsys.exit(main(sys.argv[1:], root='/'))\n")  # fmt: skip
    path.chmod(0o755)


def image(tmp: Path, debs: dict[str, Path], ntp: SntpServer) -> Path:
    """The image a fleet is flashed from: Debian 12 with kedge-agent installed, keadm on
    the path, the agent's settings for this machine's test services."""
    root = bookworm_chroot(tmp / "root")
    pool = tmp / "pool"
    pool.mkdir()
    shutil.copy(debs["kedge-agent_amd64"], pool)
    publish(root, pool, tmp)
    install = chroot(root, "apt-get", "install", "-y", "kedge-agent")
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    (root / "etc/hostname").write_text(f"{NODE}\n")
    launcher(root, "keadm", "tests.kubeedge_sim.keadm")
    (root / "var/lib/kedge-sim").mkdir(parents=True, exist_ok=True)
    (root / "var/lib/kedge-sim/keadm.json").write_text(
        json.dumps(
            {"version": "v1.13.0", "platform": "linux/amd64", "cert_wait_s": 10, "poll_s": 0.3}
        )
    )
    (root / "usr/bin/sudo").write_text('#!/bin/sh\nexec "$@"\n')  # keadm runs `sudo systemctl`
    (root / "usr/bin/sudo").chmod(0o755)
    settings = (
        f'ntp_servers = ["{ntp.address}"]\njoin_settle_s = 2\nreport_interval = 1\n'
        "[thresholds]\ndocker_min_free_mb = 1\ncpu_sample_s = 0.1\nmax_cpu_used_pct = 100\n"
        "[firstboot]\nbackoff_s = 0.5\nbackoff_cap_s = 2\nclock_wait_s = 1\nblocked_wait_s = 0\n"
    )
    (root / "etc/kedge/agent.toml").write_text(settings)
    return root


def fleet_row(m: Master) -> dict[str, Any] | None:
    status, page = m.call("GET", "/api/v1/nodes?limit=10")
    rows = [r for r in page["items"] if r["node"] == NODE] if status == 200 else []
    return rows[0] if rows else None


def test_a_packaged_board_joins_at_first_boot_and_not_again(
    cloud: tuple[Master, Mosquitto], debs: dict[str, Path], dockerd_systemd: Dockerd,
    tmp_path: Path,
) -> None:  # fmt: skip
    need("systemd-nspawn", "nsenter", "chroot", "tar")
    if os.geteuid() != 0:
        pytest.skip("booting a container needs root")
    m, _ = cloud
    with SntpServer() as ntp:
        root = image(tmp_path, debs, ntp)
        made = m.cli("seed", "create", "--uses", "1", "--node-name", "{hostname}",
                     "--out", str(tmp_path / "kedge-seed.toml"))  # fmt: skip
        assert made.returncode == 0, made.stderr
        seed = root / "boot/firmware/kedge-seed.toml"
        seed.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / "kedge-seed.toml", seed)
        # docker's data root too: the docker check measures its free space there
        binds = (f"--bind-ro={REPO}", f"--bind={dockerd_systemd.socket}:/run/docker.sock",
                 f"--bind-ro={dockerd_systemd.workdir}")  # fmt: skip
        try:
            with booted(root, tmp_path / "console.log", *binds, machine="kedge-firstboot") as box:
                record = root / "var/lib/kedge-agent/firstboot.json"

                def ended() -> bool:
                    if not record.exists():
                        return False
                    state = json.loads(record.read_text())["progress"]["state"]
                    return (
                        state in ("done", "blocked")
                        and box.show("kedge-firstboot", "SubState") != "running"
                    )

                try:
                    wait_for(ended, timeout=300, what="the first boot to end", interval=0.5)
                except TimeoutError as exc:
                    raise AssertionError(
                        f"{exc}\n{box.journal('kedge-firstboot')[-6000:]}"
                    ) from None
                journal = box.journal("kedge-firstboot")
                assert json.loads(record.read_text())["progress"]["state"] == "done", journal[
                    -6000:
                ]
                assert box.show("kedge-firstboot", "Result") == "success", journal[-4000:]
                assert "firstboot: joined (done): joined as rk3000-boot" in journal
                assert not seed.exists()  # scrubbed
                # "joined" is said once the daemon runs, by the daemon (it relays the file).
                wait_for(lambda: (r := fleet_row(m)) and r["state"] == "online" and r["ready"]
                         and (r["firstboot"] or {}).get("state") == "done",
                         timeout=120, what="the board online, Ready and joined in the fleet view")  # fmt: skip
                row = fleet_row(m)
                assert row is not None
                assert (row["firstboot"]["phase"], row["firstboot"]["state"]) == ("joined", "done")
                assert box.show("kedge-agent", "ActiveState") == "active"
                first = json.loads(box.run("cat", "/var/lib/kedge-agent/firstboot.json").stdout)
            with booted(root, tmp_path / "console.log", *binds, machine="kedge-firstboot") as box:
                # Booted again: the unit's conditions skip it; the daemon reports again.
                wait_for(lambda: box.show("kedge-agent", "ActiveState") == "active", timeout=120,
                         what="the daemon at the second boot")  # fmt: skip
                assert box.show("kedge-firstboot", "ConditionResult") == "no"
                assert (
                    json.loads(box.run("cat", "/var/lib/kedge-agent/firstboot.json").stdout)
                    == first
                )
                boards = json.loads(m.cli("boards", "--json").stdout)
                assert [(b["node_name"], b["enrollments"]) for b in boards] == [(NODE, 1)]
        finally:
            remove_containers(dockerd_systemd)

"""The first-boot seed (kedge/seed.py): what a board accepts, the node names it makes, and
`kedge-agent seed --write` onto a boot partition."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent import firstboot_state
from agent.firstboot.phases import fresh_progress
from agent.firstboot.report import Reporter
from kedge import seed
from kedge.errors import ConfigError
from tests.conftest import AgentRunner
from tests.harness.board import Board
from tests.harness.firstboot import SEED_AT

PIN = "ab" * 32
GOOD = (
    f'cloud_api = "https://198.18.0.2:8443"\nca_sha256 = "{PIN}"\nsecret = "s3cr3t-batch"\n'
    'node_name = "rk3000-{serial}"\n'
)


def test_a_seed_round_trips_and_keeps_its_secret() -> None:
    parsed = seed.parse(GOOD + '[labels]\n"site" = "plant-3"\n', "kedge-seed.toml")
    assert parsed.secret.get_secret_value() == "s3cr3t-batch"
    assert seed.parse(seed.dumps(parsed), "again") == parsed
    assert "s3cr3t" not in repr(parsed)  # never in a log line


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            'cloud_api = "ftp://x"\nsecret = "s"\n',
            "cloud_api: expected http://HOST:PORT",
        ),
        (
            'cloud_api = "https://x:1"\nsecret = "s"\n',
            "an https cloud_api needs ca_sha256 or ca_pem",
        ),
        (
            f'cloud_api = "http://x:1"\nsecret = "s"\nca_sha256 = "{PIN[:10]}"\n',
            "ca_sha256: expected 64 hex",
        ),
        (
            'cloud_api = "http://x:1"\nsecret = "s"\nnode_name = "Board_{serial}"\n',
            "node_name: use lower-case",
        ),
        (
            'cloud_api = "http://x:1"\nsecret = "s"\nnode_name = "b-{uuid}"\n',
            "node_name: unknown placeholder {uuid}",
        ),
        (
            'cloud_api = "http://x:1"\nsecret = "s"\nallow_remote = ["rm"]\n',
            "allow_remote: 'rm'",
        ),
        (
            'cloud_api = "http://x:1"\nsecret = "s"\ntoken = "abc"\n',
            "token: Extra inputs are not permitted",
        ),
        (
            'cloud_api = "http://x:1"\nsecret = "s"\nimages_archive = "../etc/x"\n',
            "images_archive: a file name beside the seed",
        ),
        ('cloud_api = "http://x:1"\n', "secret: Field required"),
        ("cloud_api = \n", "not valid TOML"),
    ],
)
def test_a_bad_seed_is_refused_naming_the_file_and_key(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        seed.parse(text, "/boot/kedge-seed.toml")
    assert str(caught.value).startswith("/boot/kedge-seed.toml: "), caught.value
    assert problem in str(caught.value), caught.value


def test_node_names_come_from_the_boards_facts() -> None:
    facts = {"serial": "RK3000:00AB-12", "mac": "02:42:AC:11:00:02", "hostname": "rock"}
    assert seed.render_name("rk3000-{serial}", facts) == "rk3000-rk300000ab12"
    assert seed.render_name("{hostname}-{mac}", facts) == "rock-0242ac110002"


def test_seed_write_puts_a_checked_seed_on_a_boot_partition(
    tmp_path: Path, agent: AgentRunner
) -> None:
    boot = tmp_path / "boot"
    boot.mkdir()
    source = tmp_path / "from-master.toml"
    source.write_text(GOOD)
    run = agent(None, "seed", "--write", str(boot), "--from", str(source))
    assert run.rc == 0, run.out + run.err
    written = boot / seed.SEED_NAME
    assert seed.parse(written.read_text(), "x") == seed.parse(GOOD, "y")
    again = agent(None, "seed", "--write", str(boot), "--from", str(source))
    assert (again.rc, again.err.strip()) == (
        2, f"kedge-agent: error: {written} exists: pass --replace to put this seed in its place")  # fmt: skip
    assert agent(None, "seed", "--write", str(boot), "--from", str(source), "--replace").rc == 0


def test_a_bad_seed_is_not_written(tmp_path: Path, agent: AgentRunner) -> None:
    boot = tmp_path / "boot"
    boot.mkdir()
    source = tmp_path / "bad.toml"
    source.write_text('cloud_api = "https://x:1"\nsecret = "s"\n')
    run = agent(None, "seed", "--write", str(boot), "--from", str(source))
    assert run.rc == 2
    assert run.err.strip().startswith(
        f"kedge-agent: error: {source}: ca_sha256: an https cloud_api needs"
    )
    assert "Traceback" not in run.err
    assert list(boot.iterdir()) == []
    archive = tmp_path / "needs-archive.toml"
    archive.write_text(GOOD + 'images_archive = "kubeedge-images.tar"\n')
    missing = agent(None, "seed", "--write", str(boot), "--from", str(archive))
    assert missing.rc == 2
    assert "kubeedge-images.tar does not exist: copy it there first" in missing.err


def test_a_boards_serial_and_mac_from_its_device_tree_and_sysfs(tmp_path: Path) -> None:
    from agent import board_identity
    from kedge.host import Host
    from tests.harness.board import Board

    board = Board.create(tmp_path, "rk3000")
    host = Host(board.root)
    assert board_identity.facts(host, "rk3000") == {"hostname": "rk3000"}
    board.write("/sys/class/dmi/id/product_serial", "To be filled by O.E.M.\n")
    assert board_identity.serial(host) is None
    board.write("/proc/device-tree/serial-number", "c3d4e5f6a7b8c9d0\0")
    board.write("/sys/class/net/br0/address", "02:00:00:00:00:01\n")  # a bridge: no device
    board.write("/sys/class/net/eth0/address", "00:00:00:00:00:00\n")
    board.mkdir("/sys/class/net/eth0/device")
    board.write("/sys/class/net/eth1/address", "AE:12:34:56:78:9A\n")
    board.mkdir("/sys/class/net/eth1/device")
    found = board_identity.facts(host, "rk3000")
    assert found == {"hostname": "rk3000", "serial": "c3d4e5f6a7b8c9d0", "mac": "ae:12:34:56:78:9a"}
    assert seed.render_name("rk3000-{serial}", found) == "rk3000-c3d4e5f6a7b8c9d0"


def test_a_hostname_keeps_its_dashes_and_dots() -> None:
    assert seed.render_name("{hostname}", {"hostname": "RK3000-4.lab"}) == "rk3000-4.lab"
    assert seed.render_name("x-{serial}", {"serial": "RK-30:00"}) == "x-rk3000"


def test_firstboot_with_a_bad_seed_says_which_key_and_keeps_the_seed(
    tmp_path: Path, agent: AgentRunner
) -> None:
    board = Board.create(tmp_path)
    board.configure({"state_dir": "/var/lib/kedge-agent"})
    bad = board.write(SEED_AT, 'cloud_api = "https://10.0.0.1:8443"\nsecret = "s3cret"\n', 0o600)
    run = agent(board, "firstboot")
    assert run.rc == 2
    assert run.err.strip().splitlines() == [
        f"kedge-agent: error: {SEED_AT}: ca_sha256: an https cloud_api needs ca_sha256 or ca_pem: "
        "the board trusts nothing else"]  # fmt: skip
    assert "Traceback" not in run.err
    assert bad.read_text().startswith("cloud_api")  # nothing lost: the owner corrects it
    assert not board.path("/var/lib/kedge-agent/seed.json").exists()


def test_firstboot_needs_the_fact_its_name_pattern_uses(tmp_path: Path, agent: AgentRunner) -> None:
    board = Board.create(tmp_path)
    board.configure({"state_dir": "/var/lib/kedge-agent"})
    board.write(SEED_AT, 'cloud_api = "http://10.0.0.1:8080"\nsecret = "s3cret"\n'
                'node_name = "rk3000-{serial}"\n', 0o600)  # fmt: skip
    run = agent(board, "firstboot")
    assert run.rc == 2
    assert "uses {serial}, which this board does not have" in run.err
    assert board.path(SEED_AT).exists()


def test_firstboot_without_a_seed_does_nothing(tmp_path: Path, agent: AgentRunner) -> None:
    board = Board.create(tmp_path)
    board.configure({"state_dir": "/var/lib/kedge-agent"})
    run = agent(board, "firstboot")
    assert run.rc == 0
    assert "no seed (/boot/firmware/kedge-seed.toml, /boot/kedge-seed.toml)" in run.out
    assert not board.path("/var/lib/kedge-agent/firstboot.json").exists()


async def test_the_timeline_closes_each_phase_and_says_nothing_twice(tmp_path: Path) -> None:
    said: list[str] = []
    record = new_record_for("rk3000-1")
    reporter = Reporter(tmp_path, record, said.append)
    await reporter.enter("network", "running", "reaching the cloud API")
    await reporter.enter("network", "waiting", "cannot reach it (next try in 1 s)")
    await reporter.enter(
        "network", "waiting", "cannot reach it (next try in 1 s)"
    )  # the same: not said
    await reporter.enter("network", "waiting", "cannot reach it (next try in 2 s)")
    reporter.outcome("the cloud API answers")
    await reporter.enter("clock", "running", "checking the clock")
    p = firstboot_state.load(tmp_path)
    assert p is not None
    assert [(t.phase, t.outcome) for t in p.progress.timeline] == [
        ("seed", "took the seed off the boot partition"), ("network", "the cloud API answers"),
        ("clock", "")]  # fmt: skip
    assert p.progress.timeline[1].finished_at is not None
    assert sum("cannot reach it (next try in 1 s)" in s for s in said) == 1
    assert (tmp_path / firstboot_state.PENDING_FILE).exists()  # the unit's condition
    await reporter.enter("joined", "done", "joined")
    assert not (tmp_path / firstboot_state.PENDING_FILE).exists()


def new_record_for(node: str) -> firstboot_state.Record:
    return firstboot_state.Record(seed_sha256="0" * 64, progress=fresh_progress(node))

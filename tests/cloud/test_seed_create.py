"""kedge-cloud-api seed create against a real cloud API: a seed whose secret enrolls the
batch's boards and nothing more, refused before any secret is spent when a board would
refuse it."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from kedge import seed
from tests.conftest import AgentRunner
from tests.harness.board import Board
from tests.harness.master import MASTER_IP, Master, master

pytestmark = pytest.mark.netns


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Master]:
    with master(tmp_path) as m:
        m.root.write(
            "/var/lib/kedge-sim/keadm.json", json.dumps({"version": "v1.13.0", "init_wait_s": 5})
        )
        m.start()
        assert m.cli("init", "--advertise-address", MASTER_IP).returncode == 0
        yield m


def test_a_seed_for_a_batch_enrolls_its_boards(
    cloud: Master, tmp_path: Path, board: Board, agent: AgentRunner
) -> None:
    out = tmp_path / "kedge-seed.toml"
    made = cloud.cli("seed", "create", "--uses", "2", "--ttl", "2h", "--node-name", "rk3000-{serial}",
                     "--label", "site=plant-3", "--allow-remote", "fix", "--out", str(out))  # fmt: skip
    assert made.returncode == 0, made.stdout + made.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    found = seed.parse(out.read_text(), str(out))
    assert (found.cloud_api, found.node_name, found.labels, found.allow_remote) == (
        cloud.url, "rk3000-{serial}", {"site": "plant-3"}, ["fix"])  # fmt: skip
    assert found.secret.get_secret_value() not in made.stdout + made.stderr

    again = cloud.cli("seed", "create", "--uses", "2", "--out", str(out))
    assert again.returncode == 2
    assert "never overwrites one" in again.stderr
    bad = cloud.cli("seed", "create", "--uses", "2", "--node-name", "Board_{serial}",
                    "--out", str(tmp_path / "other.toml"))  # fmt: skip
    assert bad.returncode == 2
    assert "the seed would be refused by the boards: node_name:" in bad.stderr
    secrets = json.loads(cloud.cli("secret", "list", "--json").stdout)
    assert [s["uses_left"] for s in secrets] == [2]  # the refused seeds spent no secret

    board.configure({"state_dir": "/var/lib/kedge-agent"})
    enrolled = agent(board, "enroll", "--cloud-api", found.cloud_api,
                     "--secret", found.secret.get_secret_value())  # fmt: skip
    assert enrolled.rc == 0, enrolled.out + enrolled.err
    secrets = json.loads(cloud.cli("secret", "list", "--json").stdout)
    assert [s["uses_left"] for s in secrets] == [1]

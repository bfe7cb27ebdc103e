"""Enrollment: a secret from the admin, `kedge-agent enroll` on a board, and `kedge-agent
join` with no flags joins through the simulated cloudcore; refusals are clear 4xx."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.settings import load_settings
from kedge import command_auth
from tests.cloud.test_identities import connect
from tests.conftest import AgentRunner
from tests.harness.board import Board
from tests.harness.dockerd import Dockerd
from tests.harness.master import LAN_IP, MASTER_IP, Master, install_cloudcore, master
from tests.harness.mosquitto import Auth, Mosquitto
from tests.harness.sntp import SntpServer
from tests.harness.wait import wait_for
from tests.test_join import remove_containers

pytestmark = pytest.mark.netns
MACHINE_A, MACHINE_B = "a" * 64, "b" * 64


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[Master]:
    with master(tmp_path) as m:
        m.start()
        install_cloudcore(m)
        yield m


def secret(cloud: Master, **spec: Any) -> dict[str, Any]:
    status, body = cloud.call("POST", "/api/v1/enrollment-secrets", spec)
    assert status == 201, body
    return dict(body)


def enroll(
    cloud: Master, secret_value: str, name: str = "board-1", machine: str | None = MACHINE_A,
    **extra: Any,
) -> tuple[int, Any]:  # fmt: skip
    body = {
        "node_name": name,
        "secret": secret_value,
        "arch": "arm64",
        "agent_version": "0.1.0",
        **extra,
    }
    if machine:
        body["machine_id"] = machine
    return cloud.call("POST", "/api/v1/enroll", body, admin=False)


def test_enroll_answers_the_join_parameters_and_spends_one_use(cloud: Master) -> None:
    s = secret(cloud, uses=1)
    status, body = enroll(cloud, s["secret"])
    assert status == 200, body
    assert body["node_name"] == "board-1"
    assert body["cloudcore"] == f"{MASTER_IP}:10000"
    assert (body["cloudcore_cert_port"], body["kubeedge_version"], body["mqtt"]) == (
        10002,
        "v1.13.0",
        None,
    )
    assert len(body["token"].split(".")) == 4
    assert body["token_expires_at"] > time.time() + 12 * 3600
    status, again = enroll(cloud, s["secret"], name="board-2", machine=MACHINE_B)
    assert (status, again["error"]["code"]) == (403, "secret_used_up")
    assert "ask the cluster admin for a new one" in again["error"]["message"]


def test_refusals(cloud: Master) -> None:
    s = secret(cloud)["secret"]
    status, body = enroll(cloud, s, name="Board_1")
    assert (status, body["error"]["code"]) == (422, "invalid")
    assert body["error"]["details"]["node_name"].startswith("expected a DNS-1123 subdomain")
    status, body = enroll(cloud, "not-a-secret")
    assert (status, body) == (
        401,
        {
            "error": {
                "code": "unauthorized",
                "message": "missing or wrong credentials",
                "details": {},
            }
        },
    )
    revoked = secret(cloud)
    out = cloud.cli("secret", "revoke", revoked["id"])
    assert (out.returncode, out.stdout) == (0, f"revoked {revoked['id']}\n")
    assert enroll(cloud, revoked["secret"])[0] == 401
    assert cloud.cli("secret", "revoke", revoked["id"]).returncode == 2
    short = secret(cloud, ttl_s=0.05)
    wait_for(lambda: time.time() > short["expires_at"], timeout=5, what="the secret's expiry")
    status, body = enroll(cloud, short["secret"])
    assert (status, body["error"]["code"]) == (403, "secret_expired")


def test_a_name_belongs_to_the_board_holding_its_key(cloud: Master) -> None:
    s = secret(cloud)["secret"]
    status, first = enroll(cloud, s, machine=MACHINE_A)
    assert status == 200, first
    key = first["command_key"]
    # the same machine-id hash, sent in clear, proves nothing
    status, body = enroll(cloud, s, machine=MACHINE_A)
    assert (status, body["error"]["code"]) == (409, "name_taken")
    assert "(no proof of the board's key)" in body["error"]["message"]
    at = int(time.time())
    forged = command_auth.proof("board-1", at, command_auth.new_key())
    status, body = enroll(cloud, s, proof=forged, proof_at=at)
    assert "(the proof was not made with this name's key)" in body["error"]["message"]
    stale = command_auth.proof("board-1", at - 1000, key)  # an old request, replayed
    status, body = enroll(cloud, s, proof=stale, proof_at=at - 1000)
    assert (status, body["error"]["code"]) == (409, "name_taken")
    assert "s from the cloud API's time (allowed: 300 s)" in body["error"]["message"]
    # the board itself, proving its key: enrolled again, with a new key
    status, again = enroll(cloud, s, proof=command_auth.proof("board-1", at, key), proof_at=at)
    assert status == 200, again
    assert again["command_key"] != key
    status, body = enroll(cloud, s, proof=command_auth.proof("board-1", at, key), proof_at=at)
    assert (status, body["error"]["code"]) == (409, "name_taken")  # the old key is spent
    # renewal needs no secret, only the current key's proof
    renew = {"node_name": "board-1", "agent_version": "0.1.0", "proof_at": at}
    current = again["command_key"]
    status, body = cloud.call("POST", "/api/v1/renew", {**renew, "proof": command_auth.proof("board-1", at, key)},
                              admin=False)  # fmt: skip
    assert (status, body["error"]["code"]) == (401, "not_proven")
    proven = {**renew, "proof": command_auth.proof("board-1", at, current)}
    status, renewed = cloud.call("POST", "/api/v1/renew", proven, admin=False)
    assert status == 200, renewed
    assert renewed["command_key"] not in (key, current)
    assert len(renewed["token"].split(".")) == 4
    nodes = cloud.cluster()["nodes"]
    nodes.append(
        {"name": "edge-7", "ip": "", "taints": [], "labels": {"node-role.kubernetes.io/edge": ""}}
    )
    cloud.edit_cluster(nodes=nodes)
    status, body = enroll(cloud, s, name="edge-7")
    assert (status, body["error"]["code"]) == (409, "name_taken")


def test_enroll_before_cloudcore_is_installed(tmp_path: Path) -> None:
    with master(tmp_path) as m:
        m.start()
        s = secret(m)["secret"]
        status, body = enroll(m, s)
        assert (status, body["error"]["code"]) == (409, "no_cloudcore")
        assert m.call("GET", "/api/v1/enrollment-secrets")[1][0]["uses_left"] is None


def test_agent_enroll_refused_is_exit_2_and_writes_nothing(
    cloud: Master, board: Board, agent: AgentRunner
) -> None:
    board.configure({"state_dir": "/var/lib/kedge-agent"})
    run = agent(board, "enroll", "--cloud-api", cloud.url, "--secret", "wrong")
    assert (run.rc, run.err.splitlines()[-1]) == (
        2,
        "kedge-agent: enroll refused: missing or wrong credentials",
    )
    assert not board.path("/var/lib/kedge-agent/enrollment.json").exists()
    run = agent(board, "enroll", "--cloud-api", "ftp://x", "--secret", "s")
    assert (run.rc, run.err) == (
        2,
        "kedge-agent: error: --cloud-api 'ftp://x': expected http://HOST:PORT or "
        "https://HOST:PORT\n",
    )


@pytest.mark.docker
def test_secret_enroll_join_with_no_flags_joins_the_node(
    cloud: Master, board: Board, dockerd_systemd: Dockerd, ntp: SntpServer, agent: AgentRunner
) -> None:
    board.install_systemd()
    board.configure(
        {
            "docker_host": f"unix://{dockerd_systemd.socket}",
            "ntp_servers": [ntp.address],
            "join_settle_s": 1,
            "state_dir": "/var/lib/kedge-agent",
            "thresholds": {"docker_min_free_mb": 1, "cpu_sample_s": 0.1, "max_cpu_used_pct": 100},
        }
    )
    try:
        created = cloud.cli("secret", "create", "--uses", "4", "--ttl", "24h", "--note", "plant 3")
        assert created.returncode == 0, created.stderr
        run = agent(board, "enroll", "--cloud-api", cloud.url, "--secret", created.stdout.strip())
        assert run.rc == 0, run.out + run.err
        assert "enrolled as board-1" in run.out
        saved = board.path("/var/lib/kedge-agent/enrollment.json")
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
        # the key the API seals this board's commands with, known to both ends only
        key = json.loads(saved.read_text())["command_key"]
        with sqlite3.connect(cloud.state / "kedge.db") as db:
            assert db.execute(
                "SELECT command_key FROM boards WHERE node_name = 'board-1'"
            ).fetchone() == (key,)
        assert key not in run.out + run.err
        again = agent(board, "enroll", "--cloud-api", cloud.url, "--secret", created.stdout.strip())
        assert (again.rc, again.out.splitlines()[-1]) == (
            0,
            f"✓ already enrolled as board-1 with {cloud.url}: nothing changed",
        )
        # --again: the board proves the name is its own with its key, and gets a new one
        forced = agent(
            board, "enroll", "--cloud-api", cloud.url, "--secret", created.stdout.strip(), "--again"
        )
        assert forced.rc == 0, forced.out + forced.err
        assert json.loads(saved.read_text())["command_key"] != key
        # --renew: no secret, the current key proves the board
        key = json.loads(saved.read_text())["command_key"]
        renewed = agent(board, "enroll", "--cloud-api", cloud.url, "--renew")
        assert renewed.rc == 0, renewed.out + renewed.err
        assert json.loads(saved.read_text())["command_key"] != key

        check = agent(board, "check", "--json", "--only", "clock")
        assert "cloud_api_offset_s" in check.result("clock").details

        # The token from enrollment has ended (a board flashed long ago): join renews it,
        # proving the board with its key, then joins.
        stale = json.loads(saved.read_text())
        saved.write_text(json.dumps({**stale, "token_expires_at": time.time() - 60}))
        run = agent(board, "join", "--yes", "--json")
        assert run.rc == 0, run.out + run.err
        fresh = json.loads(saved.read_text())
        assert fresh["token_expires_at"] > time.time() + 3600
        assert fresh["command_key"] != stale["command_key"]
        doc = json.loads(run.out)
        assert (
            doc["summary"]
            == f"joined {MASTER_IP}:10000 as board-1; edgecore is active and connected to cloudhub"
        )
        token = json.loads(saved.read_text())["token"]
        assert token.split(".")[2] not in run.out + run.err
        node = next(n for n in cloud.cluster()["nodes"] if n["name"] == "board-1")
        assert "node-role.kubernetes.io/edge" in node["labels"]
        boards = cloud.cli("boards", "--json")
        assert [(b["node_name"], b["arch"], b["joined"]) for b in json.loads(boards.stdout)] == [
            ("board-1", "amd64" if os.uname().machine == "x86_64" else "arm64", True)
        ]
    finally:
        board.stop_processes()
        remove_containers(dockerd_systemd)


@pytest.mark.faults
def test_a_one_use_secret_enrolls_one_of_many_concurrent_boards(cloud: Master) -> None:
    """The use is spent before the slow cluster work: of 16 concurrent enrollments with
    a one-use secret exactly one gets through, and the others are refused at once."""
    from concurrent.futures import ThreadPoolExecutor

    s = secret(cloud, uses=1)
    with ThreadPoolExecutor(16) as pool:
        results = list(
            pool.map(
                lambda n: enroll(cloud, s["secret"], name=f"board-{n}", machine=f"{n:064x}"),
                range(16),
            )
        )
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [403] * 15, results
    status, listed = cloud.call("GET", "/api/v1/enrollment-secrets")
    assert status == 200
    assert [x["uses_left"] for x in listed if x["id"] == s["id"]] == [0]


@pytest.mark.faults
def test_a_refused_enrollment_gives_its_use_back(cloud: Master) -> None:
    s = secret(cloud, uses=1)
    nodes = cloud.cluster()["nodes"]
    nodes.append({"name": "edge-9", "ip": "", "taints": [], "labels": {}})
    cloud.edit_cluster(nodes=nodes)
    status, body = enroll(cloud, s["secret"], name="edge-9")
    assert (status, body["error"]["code"]) == (409, "name_taken")
    status, listed = cloud.call("GET", "/api/v1/enrollment-secrets")
    assert [x["uses_left"] for x in listed if x["id"] == s["id"]] == [1]
    assert enroll(cloud, s["secret"], name="board-2")[0] == 200


@pytest.fixture
def cloud_and_broker(tmp_path: Path) -> Iterator[tuple[Master, Mosquitto]]:
    """A master whose broker `broker init` set up: every enrolled board gets its own
    identity (the API reaches the broker across the LAN, as the boards do)."""
    with master(tmp_path) as m:
        broker = Mosquitto(tmp_path / "mosquitto", state_dir=m.state, board_host=LAN_IP).start()
        try:
            m.start(mqtt={"host": LAN_IP})
            status, body = m.call("POST", "/api/v1/cloudcore", {"advertise_address": [MASTER_IP]})
            assert status == 202, body
            assert m.wait_job(body["job"]["id"])["state"] == "succeeded"
            yield m, broker
        finally:
            broker.stop()


def test_an_enrolled_board_gets_its_own_broker_identity_renewed_and_revoked(
    cloud_and_broker: tuple[Master, Mosquitto], board: Board, agent: AgentRunner
) -> None:
    cloud, broker = cloud_and_broker
    board.configure({"state_dir": "/var/lib/kedge-agent"})
    s = secret(cloud, uses=1)
    run = agent(board, "enroll", "--cloud-api", cloud.url, "--secret", s["secret"])
    assert run.rc == 0, run.out + run.err
    state = board.path("/var/lib/kedge-agent")
    saved = json.loads((state / "enrollment.json").read_text())
    assert saved["mqtt"] == {"host": LAN_IP, "port": broker.port, "tls": True,
                             "username": "board-board-1",
                             "ca_pem": (broker.identities.record.ca_file.read_text()  # type: ignore[union-attr]
                                        )}  # fmt: skip
    assert stat.S_IMODE((state / "mqtt.password").stat().st_mode) == 0o600
    first = (state / "mqtt.password").read_text().strip()
    assert first not in run.out + run.err + (state / "enrollment.json").read_text()

    def own(password: str) -> str:
        """Connect as the agent's own settings say (its pinned CA, its identity)."""
        settings = load_settings(board.config_path, root=board.root)
        m = settings.mqtt
        assert (m.host, m.username, m.ca_file) == (
            LAN_IP, "board-board-1", board.path("/var/lib/kedge-agent/mqtt-ca.pem"))  # fmt: skip
        return connect(
            broker, Auth("board-board-1", password, m.ca_file), "kedge-board-1", host=LAN_IP
        )

    assert own(first) == "Success"
    renewed = agent(board, "enroll", "--cloud-api", cloud.url, "--renew")
    assert renewed.rc == 0, renewed.out + renewed.err
    second = (state / "mqtt.password").read_text().strip()
    assert (own(first), own(second)) == ("Not authorized", "Success")
    status, done = cloud.call("DELETE", "/api/v1/nodes/board-1")
    assert (status, done["broker_identity_removed"]) == (200, True), done
    assert own(second) == "Not authorized"

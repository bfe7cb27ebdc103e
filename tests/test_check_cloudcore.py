"""cloudcore: reachability, the certificate edgecore will verify, and the join token."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from kedge.wire import CheckResult
from tests.conftest import AgentRunner, check_one
from tests.harness.board import Board
from tests.harness.procs import free_port
from tests.kubeedge_sim.cloudcore import CloudcoreSim
from tests.kubeedge_sim.pki import CloudcorePKI


def check_cc(agent: AgentRunner, board: Board) -> CheckResult:
    return check_one(agent, board, "cloudcore")


def point_at(board: Board, cc: CloudcoreSim, **extra: object) -> None:
    board.configure({"cloudcore": cc.cloudcore, "cloudcore_cert_port": cc.cert_port, **extra})


def test_not_configured_is_a_warning(board: Board, agent: AgentRunner) -> None:
    result = check_cc(agent, board)
    assert result.status == "warn"
    assert result.summary == "cloudcore is not set, so it cannot be checked"
    assert "KEDGE_AGENT_CLOUDCORE" in result.remedy


def test_valid_token_passes(board: Board, agent: AgentRunner, cloudcore: CloudcoreSim) -> None:
    point_at(board, cloudcore, token=cloudcore.pki.token())
    result = check_cc(agent, board)
    assert result.status == "pass"
    assert result.summary.startswith(
        f"cloudcore {cloudcore.cloudcore} reachable, TLS verified; token matches its CA"
    )
    assert result.details["ca_sha256"] == cloudcore.pki.token().split(".")[0]


def test_token_is_read_from_token_file(
    board: Board, agent: AgentRunner, cloudcore: CloudcoreSim, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(cloudcore.pki.token() + "\n")
    point_at(board, cloudcore, token_file=str(token_file))
    assert check_cc(agent, board).status == "pass"
    point_at(board, cloudcore, token_file=str(tmp_path / "absent"))
    result = check_cc(agent, board)
    assert result.status == "fail"
    assert result.summary.endswith(
        f"token_file {tmp_path / 'absent'}: cannot read: No such file or directory"
    )


def test_no_token_is_a_warning(board: Board, agent: AgentRunner, cloudcore: CloudcoreSim) -> None:
    point_at(board, cloudcore)
    result = check_cc(agent, board)
    assert result.status == "warn"
    assert result.summary.endswith("no join token configured")


def test_token_of_another_cloudcore_is_caught(
    board: Board, agent: AgentRunner, cloudcore: CloudcoreSim
) -> None:
    other = CloudcorePKI.create(["127.0.0.1"]).token()
    point_at(board, cloudcore, token=other)
    result = check_cc(agent, board)
    assert result.status == "fail"
    assert "the token is for another cloudcore: token CA hash " + other[:12] in result.summary
    assert "keadm gettoken" in result.remedy
    assert other not in result.model_dump_json()  # the token itself never leaves


def test_expired_and_expiring_tokens(
    board: Board, agent: AgentRunner, cloudcore: CloudcoreSim
) -> None:
    point_at(board, cloudcore, token=cloudcore.pki.token(expires_in=timedelta(hours=-1)))
    expired = check_cc(agent, board)
    assert expired.status == "fail"
    assert "the token expired at" in expired.summary
    point_at(board, cloudcore, token=cloudcore.pki.token(expires_in=timedelta(minutes=20)))
    expiring = check_cc(agent, board)
    assert expiring.status == "warn"
    assert expiring.summary.endswith("the token expires in 19 min")


def test_malformed_token_uses_kubeedges_words(
    board: Board, agent: AgentRunner, cloudcore: CloudcoreSim
) -> None:
    three_parts = ".".join(cloudcore.pki.token().split(".")[1:])
    point_at(board, cloudcore, token=three_parts)
    result = check_cc(agent, board)
    assert result.status == "fail"
    assert result.summary.endswith(
        "token credentials are in the wrong format: 3 dot-separated parts, expected 4"
    )


def test_unreachable_cloudcore_names_the_nat_pitfall(board: Board, agent: AgentRunner) -> None:
    ws, cert = free_port(), free_port()
    board.configure({"cloudcore": f"127.0.0.1:{ws}", "cloudcore_cert_port": cert})
    result = check_cc(agent, board)
    assert result.status == "fail"
    assert result.summary == (
        f"cannot reach cloudcore: 127.0.0.1:{ws}: connection refused; 127.0.0.1:{cert}: connection refused"
    )
    assert "bridged network adapter" in result.remedy
    assert "--advertise-address" in result.remedy


def test_only_the_certificate_port_closed(
    board: Board, agent: AgentRunner, cloudcore: CloudcoreSim
) -> None:
    closed = free_port()
    board.configure({"cloudcore": cloudcore.cloudcore, "cloudcore_cert_port": closed})
    result = check_cc(agent, board)
    assert result.status == "fail"
    assert f"127.0.0.1:{closed}" in result.summary
    assert f"127.0.0.1:{cloudcore.websocket_port}" not in result.summary


def test_address_missing_from_the_certificate(board: Board, agent: AgentRunner) -> None:
    # cloudcore was initialised with --advertise-address=10.9.8.7 only.
    with CloudcoreSim(CloudcorePKI.create(["10.9.8.7"])) as cc:
        point_at(board, cc, token=cc.pki.token())
        result = check_cc(agent, board)
    assert result.status == "fail"
    assert result.summary.startswith("edgecore would reject cloudcore's certificate: ")
    assert "IP address mismatch" in result.summary
    assert "--advertise-address including 127.0.0.1" in result.remedy


def test_from_v1_20_a_name_cloudcore_knows_is_named_before_keadm_refuses(
    board: Board, agent: AgentRunner
) -> None:
    """cloudcore v1.20+ answers GET /node/<name> on its certificate port; keadm join
    refuses unless that is 404."""
    pki = CloudcorePKI.create(["127.0.0.1"])
    with CloudcoreSim(pki, version="v1.23.1", nodes={"board-1"}) as cc:
        point_at(board, cc, token=pki.token(), kubeedge_version="v1.23.1", runtime="containerd")
        taken = check_cc(agent, board)
        assert taken.status == "fail"
        assert taken.summary == (
            "cloudcore answers HTTP 200 for node board-1: keadm join v1.23.1 would refuse with "
            '"node already exists or internal error occurred, cannot register again"'
        )
        assert taken.remedy.startswith("If this board is that node coming back, delete its Node "
                                       "first: kedge-cloud-api remove board-1")  # fmt: skip
        cc.nodes.clear()  # the admin deleted the Node
        assert check_cc(agent, board).status == "pass"
        # a v1.13 target never asks (its keadm does not)
        cc.nodes.add("board-1")
        point_at(board, cc, token=pki.token())
        assert check_cc(agent, board).status == "pass"

"""kedge-agent join end to end: real dockerd + registry, simulated keadm/edgecore/cloudcore."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AgentRun, AgentRunner, ready_settings
from tests.harness.board import Board
from tests.harness.dockerd import Dockerd, api
from tests.harness.named_process import named_process
from tests.harness.sntp import SntpServer
from tests.kubeedge_sim.cloudcore import CloudcoreSim
from tests.kubeedge_sim.pki import CloudcorePKI

pytestmark = pytest.mark.docker


@pytest.fixture
def joinable(
    board: Board, dockerd_systemd: Dockerd, ntp: SntpServer, cloudcore: CloudcoreSim
) -> Iterator[Board]:
    board.install_systemd()
    board.configure(join_settings(dockerd_systemd, ntp, cloudcore))
    yield board
    board.stop_processes()
    remove_containers(dockerd_systemd)


def join_settings(d: Dockerd, ntp: SntpServer, cc: CloudcoreSim, **extra: Any) -> dict[str, Any]:
    return ready_settings(d, ntp, cc, join_settle_s=1, state_dir="/var/lib/kedge-agent", **extra)


def remove_containers(d: Dockerd) -> None:
    _, body = api(d.socket, "GET", "/containers/json?all=1")
    for c in json.loads(body):
        api(d.socket, "DELETE", f"/containers/{c['Id']}?force=1")


def join(agent: AgentRunner, board: Board, *extra: str) -> AgentRun:
    return agent(board, "join", "--yes", "--json", *extra)


def test_fresh_board_joins_and_is_verified(
    joinable: Board, agent: AgentRunner, cloudcore: CloudcoreSim
) -> None:
    run = join(agent, joinable)
    doc = json.loads(run.out)
    assert run.rc == 0, run.out + run.err
    assert doc["ok"] is True
    assert (
        doc["summary"]
        == f"joined {cloudcore.cloudcore} as board-1; edgecore is active and connected to cloudhub"
    )
    argv = doc["details"]["keadm_argv"]
    assert "--runtimetype=docker" in argv
    assert "--remote-runtime-endpoint=unix:///var/run/dockershim.sock" in argv
    assert "--cgroupdriver=systemd" in argv
    assert "--token=<redacted>" in argv
    assert cloudcore.pki.token().split(".")[1] not in run.out + run.err
    for cert in (
        "etc/kubeedge/ca/rootCA.crt",
        "etc/kubeedge/certs/server.crt",
        "etc/kubeedge/certs/server.key",
    ):
        assert joinable.path(cert).is_file()
    # keadm's deferred os.Remove (join.go@v1.13.0 line 198) took the token file away.
    assert not joinable.path("/etc/kubeedge/bootstrap-edgecore.conf").exists()
    record = json.loads(joinable.path("/var/lib/kedge-agent/join.json").read_text())
    assert record["phase"] == "joined"
    assert record["keadm_exit_code"] == 0
    assert cloudcore.events == [
        "signed the certificate for edgenode: board-1",
        "edge node board-1 connected",
    ]


def test_second_join_is_a_no_op(joinable: Board, agent: AgentRunner) -> None:
    assert join(agent, joinable).rc == 0
    again = json.loads(join(agent, joinable).out)
    assert again["ok"] is True
    assert again["summary"].startswith("already joined to ")
    assert again["summary"].endswith("as board-1: nothing to do")
    assert again["changes"] == []


def test_reset_returns_a_joined_board_to_a_clean_one(
    joinable: Board, agent: AgentRunner, dockerd_systemd: Dockerd
) -> None:
    assert join(agent, joinable).rc == 0
    # Joined, what is in /etc/kubeedge is the join's own, not a leftover
    owned = agent(joinable, "check", "--only", "leftovers", "--json")
    assert owned.rc == 0
    assert json.loads(owned.out)["checks"][0]["summary"].startswith("joined as board-1 to ")
    told = agent(joinable, "check", "--only", "leftovers").out
    assert told.rstrip().endswith(" ms: joined, nothing in the way.")
    run = agent(joinable, "reset", "--yes", "--json")
    doc = json.loads(run.out)
    targets = [c["target"] for c in doc["changes"]]
    assert "edgecore.service" in targets
    assert "/etc/systemd/system/edgecore.service" in targets
    assert "container mqtt" in targets
    assert "/etc/kubeedge" in targets
    assert "/var/lib/kubeedge" in targets
    assert not joinable.path("/etc/kubeedge").exists()
    assert [p for p in joinable.processes() if p.name() == "edgecore"] == []
    _, body = api(dockerd_systemd.socket, "GET", "/containers/json?all=1")
    assert json.loads(body) == []
    assert agent(joinable, "check", "--only", "leftovers").rc == 0
    again = json.loads(agent(joinable, "reset", "--yes", "--json").out)
    assert again["summary"] == "nothing to reset: no trace of KubeEdge on this board"
    assert again["changes"] == []


def test_failed_preflight_refuses_and_names_the_checks(joinable: Board, agent: AgentRunner) -> None:
    joinable.mkdir("/etc/rancher/k3s")  # the field story's "ultimate bug"
    run = join(agent, joinable)
    doc = json.loads(run.out)
    assert run.rc == 1
    assert doc["summary"] == "preflight failed: conflicts (directory /etc/rancher/k3s)"
    assert not joinable.path("/etc/kubeedge").exists()  # keadm never ran
    assert "keadm: " not in run.err


def test_cgroup_mismatch_crash_loop_is_caught_and_cleaned(
    joinable: Board,
    agent: AgentRunner,
    dockerd_systemd: Dockerd,
    ntp: SntpServer,
    cloudcore: CloudcoreSim,
) -> None:
    # Forced past the preflight, keadm gets --cgroupdriver=cgroupfs: keadm itself succeeds
    # (edgecore fetched its certificates), then edgecore crash-loops. Only the agent's
    # verification notices.
    joinable.configure(join_settings(dockerd_systemd, ntp, cloudcore, cgroup_driver="cgroupfs"))
    run = join(agent, joinable, "--ignore", "cgroup-driver")
    doc = json.loads(run.out)
    assert run.rc == 1
    assert "--cgroupdriver=cgroupfs" in doc["details"]["keadm_argv"]
    assert [c["id"] for c in doc["causes"]] == ["cgroup-driver-mismatch"]
    assert (
        doc["causes"][0]["summary"]
        == 'edgecore uses the "cgroupfs" cgroup driver but docker uses "systemd"'
    )
    assert (
        doc["summary"]
        == 'join failed: edgecore uses the "cgroupfs" cgroup driver but docker uses "systemd"'
    )
    assert not joinable.path("/etc/kubeedge").exists()  # clean for a retry
    record = json.loads(joinable.path("/var/lib/kedge-agent/join.json").read_text())
    assert record["phase"] == "failed"
    assert record["causes"][0]["id"] == "cgroup-driver-mismatch"
    # Set right, the retry joins.
    joinable.configure(join_settings(dockerd_systemd, ntp, cloudcore))
    assert join(agent, joinable).rc == 0


def test_board_clock_behind_cloudcore_cert(
    joinable: Board, agent: AgentRunner, dockerd_systemd: Dockerd, ntp: SntpServer
) -> None:
    from datetime import UTC, datetime, timedelta

    from tests.kubeedge_sim.pki import CloudcorePKI

    pki = CloudcorePKI.create(["127.0.0.1"], not_before=datetime.now(UTC) + timedelta(days=1))
    with CloudcoreSim(pki) as cc:
        joinable.configure(join_settings(dockerd_systemd, ntp, cc))
        refused = json.loads(join(agent, joinable).out)
        assert refused["summary"].startswith("preflight failed: clock (board clock ")
        forced = json.loads(join(agent, joinable, "--ignore", "clock,cloudcore").out)
    assert [c["id"] for c in forced["causes"]] == ["clock-x509"]
    assert "x509: certificate has expired or is not yet valid" in forced["causes"][0]["evidence"]


def test_token_for_another_cloudcore(
    joinable: Board,
    agent: AgentRunner,
    dockerd_systemd: Dockerd,
    ntp: SntpServer,
    cloudcore: CloudcoreSim,
) -> None:
    from tests.kubeedge_sim.pki import CloudcorePKI

    other = CloudcorePKI.create(["127.0.0.1"]).token()
    joinable.configure(join_settings(dockerd_systemd, ntp, cloudcore, token=other))
    refused = json.loads(join(agent, joinable).out)
    assert refused["summary"].startswith("preflight failed: cloudcore (")
    assert "the token is for another cloudcore" in refused["summary"]
    forced = json.loads(join(agent, joinable, "--ignore", "cloudcore").out)
    assert [c["id"] for c in forced["causes"]] == ["wrong-ca"]
    assert other.split(".")[2] not in json.dumps(forced)


def test_expired_token_is_rejected_by_cloudcore(
    joinable: Board,
    agent: AgentRunner,
    dockerd_systemd: Dockerd,
    ntp: SntpServer,
    cloudcore: CloudcoreSim,
) -> None:
    from datetime import timedelta

    joinable.configure(
        join_settings(
            dockerd_systemd,
            ntp,
            cloudcore,
            token=cloudcore.pki.token(expires_in=timedelta(seconds=-5)),
        )
    )
    forced = json.loads(join(agent, joinable, "--ignore", "cloudcore").out)
    assert [c["id"] for c in forced["causes"]] == ["bad-token"]
    assert cloudcore.events == [
        "failed to sign the certificate for edgenode: board-1, invalid token"
    ]


def test_half_finished_earlier_join(joinable: Board, agent: AgentRunner) -> None:
    joinable.mkdir("/etc/kubeedge/config")
    joinable.write("/etc/kubeedge/config/edgecore.yaml", "# from a join that died\n")
    refused = json.loads(join(agent, joinable).out)
    assert refused["summary"].startswith("preflight failed: leftovers (/etc/kubeedge is not empty")
    fixed = agent(joinable, "fix", "--only", "leftovers", "--yes", "--json")
    assert json.loads(fixed.out)["ok"] is True
    assert join(agent, joinable).rc == 0


def test_image_missing_from_the_mirror(
    joinable: Board,
    agent: AgentRunner,
    dockerd_cgroupfs: Dockerd,
    ntp: SntpServer,
    cloudcore: CloudcoreSim,
    registry: Any,
) -> None:
    repo = f"{registry.address}/nowhere"
    joinable.configure(join_settings(dockerd_cgroupfs, ntp, cloudcore, image_repository=repo))
    try:
        run = join(agent, joinable)  # images only warn: keadm runs and fails pulling
        doc = json.loads(run.out)
    finally:
        remove_containers(dockerd_cgroupfs)
    assert run.rc == 1
    assert [c["id"] for c in doc["causes"]] == ["image-pull"]
    # keadm pulls in a Go map's order (pkg/image/image.go): any of the three comes first.
    summary = doc["causes"][0]["summary"]
    assert any(
        f"{repo}/{name}" in summary
        for name in ("installation-package", "eclipse-mosquitto", "pause")
    )
    assert "manifest unknown" in summary
    assert not joinable.path("/etc/kubeedge").exists()


def test_two_joins_cannot_run_at_once(joinable: Board, agent: AgentRunner) -> None:
    from agent.state import StateDir
    from kedge.host import Host

    with StateDir(Host(joinable.root), __import__("pathlib").Path("/var/lib/kedge-agent")).lock(
        "join"
    ):
        run = agent(joinable, "join", "--yes")
    assert run.rc == 1
    assert run.err.startswith(
        "kedge-agent: another kedge-agent command is changing this board (kedge-agent join, pid "
    )


def test_join_without_yes_and_without_a_terminal_refuses(
    joinable: Board, agent: AgentRunner
) -> None:
    run = agent(joinable, "join")
    assert run.rc == 2
    assert (
        run.err
        == "kedge-agent: error: refusing to join without --yes: there is no terminal to ask on\n"
    )


def test_sigterm_mid_join_leaves_a_board_the_next_join_handles(
    joinable: Board, agent: AgentRunner
) -> None:
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from tests.harness.wait import wait_for

    joinable.install_keadm(cert_wait_s=120)
    joinable.inject(edgecore_stall=True)  # edgecore never gets certificates: keadm waits
    record = joinable.path("/var/lib/kedge-agent/join.json")
    journal = joinable.path("/var/lib/kedge-sim/journal/edgecore.service.log")
    argv = [str(Path(sys.executable).with_name("kedge-agent")), "join", "--yes", "--json",
            "--root", str(joinable.root), "--config", str(joinable.config_path)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: journal.exists() and "waiting for cloudcore" in journal.read_text(),
                 timeout=60, what="keadm to be waiting for certificates")  # fmt: skip
        assert json.loads(record.read_text())["phase"] == "keadm"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert err.endswith("kedge-agent: interrupted\n")
    assert json.loads(record.read_text())["phase"] == "interrupted"
    assert [
        p for p in joinable.processes() if "keadm" in " ".join(p.cmdline())
    ] == []  # keadm reaped
    assert joinable.path("/etc/kubeedge/config/edgecore.yaml").exists()  # a half-joined board
    joinable.inject()
    joinable.install_keadm(cert_wait_s=5)
    run = join(agent, joinable)
    assert run.rc == 0, run.out + run.err
    assert "cleaning up the unfinished join of " in run.err
    assert "(phase interrupted)" in run.err
    assert json.loads(record.read_text())["phase"] == "joined"


def test_cloudcore_refusing_certificates_is_named(
    joinable: Board, agent: AgentRunner, dockerd_systemd: Dockerd, ntp: SntpServer
) -> None:
    from tests.kubeedge_sim.pki import CloudcorePKI

    with CloudcoreSim(CloudcorePKI.create(["127.0.0.1"]), refuse_edge_crt=True) as cc:
        joinable.configure(join_settings(dockerd_systemd, ntp, cc))
        doc = json.loads(join(agent, joinable).out)
    assert [c["id"] for c in doc["causes"]] == ["edge-certificate"]
    assert doc["summary"] == (
        "join failed: cloudcore did not issue the edge certificate: "
        "certificate requests are refused by this cloudcore"
    )


def test_unknown_failure_falls_back_to_the_journal_hint(
    joinable: Board, agent: AgentRunner
) -> None:
    joinable.inject(edgecore_crash="F1127 panic: something nobody has seen before")
    doc = json.loads(join(agent, joinable).out)
    assert [c["id"] for c in doc["causes"]] == ["cert-timeout"]
    assert "journalctl -u edgecore" in doc["causes"][0]["remedy"]


def test_reset_without_yes_and_without_a_terminal_refuses(
    joinable: Board, agent: AgentRunner
) -> None:
    joinable.mkdir("/etc/kubeedge/config")
    run = agent(joinable, "reset")
    assert run.rc == 2
    assert (
        run.err
        == "kedge-agent: error: refusing to reset without --yes: there is no terminal to ask on\n"
    )
    assert joinable.path("/etc/kubeedge/config").is_dir()
    dry = json.loads(agent(joinable, "reset", "--dry-run", "--json").out)
    assert [(c["action"], c["target"], c["done"]) for c in dry["changes"]] == [
        ("remove", "/etc/kubeedge", False),
    ]
    assert joinable.path("/etc/kubeedge/config").is_dir()


@pytest.mark.faults
def test_images_are_pulled_before_keadm_gets_the_token(
    joinable: Board, agent: AgentRunner, dockerd_cgroupfs: Dockerd, ntp: SntpServer,
    cloudcore: CloudcoreSim,
) -> None:  # fmt: skip
    """keadm v1.13 takes the token on its command line, readable in /proc while it runs:
    the join pulls the images itself first, so keadm's run (and the token's exposure)
    is seconds, not the minutes of keadm's own pulls."""
    from tests.conftest import HUB_IMAGES

    joinable.configure(join_settings(dockerd_cgroupfs, ntp, cloudcore))
    try:
        run = join(agent, joinable)
        doc = json.loads(run.out)
        assert run.rc == 0, run.err
        assert [(c["action"], c["target"]) for c in doc["changes"]][: len(HUB_IMAGES)] == [
            ("pull", ref) for ref in HUB_IMAGES
        ]
        assert doc["changes"][-1]["action"] == "join"
        lines = run.err.splitlines()
        first_keadm = next(i for i, line in enumerate(lines) if line.startswith("$ keadm join"))
        assert all(i < first_keadm for i, line in enumerate(lines) if "pulled " in line)
    finally:
        remove_containers(dockerd_cgroupfs)
        for ref in HUB_IMAGES:  # the daemon's contract: no images
            dockerd_cgroupfs.remove_image(ref)


def test_a_keadm_that_cannot_start_is_named_in_the_summary(
    joinable: Board, agent: AgentRunner
) -> None:
    joinable.path("/usr/local/bin/keadm").unlink()
    run = join(agent, joinable, "--ignore", "keadm")
    doc = json.loads(run.out)
    assert run.rc == 1
    assert doc["summary"].startswith("join failed: keadm: command not found on ")
    assert "exited" not in doc["summary"]
    record = json.loads(joinable.path("/var/lib/kedge-agent/join.json").read_text())
    assert (record["phase"], record["keadm_exit_code"]) == ("failed", None)


def test_kube_proxy_on_the_board_is_named_with_edgecores_own_words(
    joinable: Board, agent: AgentRunner, tmp_path: Path
) -> None:
    # edge/cmd/edgecore/app/server.go@v1.13.0: kube-proxy has its own text, not kubelet's.
    with named_process("kube-proxy", tmp_path):
        run = join(agent, joinable, "--ignore", "conflicts")
    doc = json.loads(run.out)
    assert run.rc == 1
    cause = doc["causes"][0]
    assert cause["id"] == "kubelet-running"
    assert cause["summary"].startswith("a kube-proxy process runs on the board")
    assert "kube-proxy should not running on edge node" in cause["evidence"]


def test_a_certificate_for_several_other_addresses_is_recognised(
    board: Board, dockerd_systemd: Dockerd, ntp: SntpServer, tmp_path: Path, agent: AgentRunner
) -> None:
    # cloudcore's certificate names two addresses; the board reaches it on a third. Go's
    # HostnameError lists them all: "x509: certificate is valid for A, B, not C".
    board.install_systemd()
    with CloudcoreSim(CloudcorePKI.create(["127.0.0.2", "127.0.0.3"])) as cc:
        board.configure(join_settings(dockerd_systemd, ntp, cc))
        run = join(agent, board, "--ignore", "cloudcore")
    board.stop_processes()
    remove_containers(dockerd_systemd)
    doc = json.loads(run.out)
    assert run.rc == 1
    cause = next(c for c in doc["causes"] if c["id"] == "certificate-address")
    assert "x509: certificate is valid for 127.0.0.2, 127.0.0.3, not 127.0.0.1" in cause["evidence"]
    assert "kedge-cloud-api init --advertise-address" in cause["remedy"]


def test_reset_never_tears_down_cloudcore_from_a_board_holding_a_kubeconfig(
    joinable: Board, agent: AgentRunner, tmp_path: Path
) -> None:
    """keadm reset asks the cluster first (RunningModuleV2) and, finding cloudcore,
    deletes namespace kubeedge. A board with the master's kubeconfig (copied there to
    run kubectl, as guides suggest) must come out of kedge's reset with cloudcore alive."""
    from tests.kubeedge_sim import cluster

    kubeconfig = cluster.with_cloudcore(tmp_path / "master" / "config")
    joinable.symlink("/root/.kube/config", str(kubeconfig))
    run = join(agent, joinable)
    assert run.rc == 0, run.out + run.err
    reset = agent(joinable, "reset", "--yes", "--json")
    assert reset.rc == 0, reset.err
    assert "kubeedge" in cluster.load(str(kubeconfig))["namespaces"]
    assert "kubeedge/cloudcore" in cluster.load(str(kubeconfig))["deployments"]
    assert not joinable.path("/etc/kubeedge").exists()


def test_an_edge_that_never_reaches_cloudhub_is_not_joined(
    board: Board, dockerd_systemd: Dockerd, ntp: SntpServer, agent: AgentRunner
) -> None:
    """cloudcore's certificate server (10002) answers, cloudhub (10000) turns the edge
    away: edgecore gets its certificates and keeps running, "active", but the Node only
    appears once edged registers over the websocket (upstream.go@v1.13.0)."""
    board.install_systemd()
    registered: list[str] = []
    with CloudcoreSim(CloudcorePKI.create(["127.0.0.1"]), refuse_websocket=True,
                      on_registered=registered.append) as cc:  # fmt: skip
        board.configure(join_settings(dockerd_systemd, ntp, cc))
        run = join(agent, board)
    board.stop_processes()
    remove_containers(dockerd_systemd)
    doc = json.loads(run.out)
    assert run.rc == 1, run.out
    assert doc["causes"][0]["id"] == "hub-unreachable"
    assert doc["summary"].startswith(
        "join failed: edgecore got its certificates but never connected"
    )
    assert registered == []


def test_a_joined_edge_is_registered_by_cloudhub_not_by_the_certificate(
    board: Board, dockerd_systemd: Dockerd, ntp: SntpServer, agent: AgentRunner
) -> None:
    board.install_systemd()
    registered: list[str] = []
    with CloudcoreSim(CloudcorePKI.create(["127.0.0.1"]), on_registered=registered.append) as cc:
        board.configure(join_settings(dockerd_systemd, ntp, cc))
        run = join(agent, board)
        assert run.rc == 0, run.out
        assert registered == ["board-1"]
        assert "edge node board-1 connected" in cc.events
    board.stop_processes()
    remove_containers(dockerd_systemd)


def test_a_crash_loop_between_restarts_is_not_joined(joinable: Board, agent: AgentRunner) -> None:
    """keadm's unit has Restart=always, RestartSec=10: an edgecore that dies a moment
    after it starts reads "active" between its crashes; systemd's restart count does not
    lie. (Here it dies after getting its certificates, so keadm itself reports success.)"""
    joinable.inject(edgecore_crash_after_certs="F1129 edged.go:249 something went wrong")
    run = join(agent, joinable)
    doc = json.loads(run.out)
    assert run.rc == 1, run.out
    assert doc["summary"].startswith("join failed")
    record = json.loads(joinable.path("/var/lib/kedge-agent/join.json").read_text())
    assert record["keadm_exit_code"] == 0  # keadm saw the certificates and was satisfied


async def test_settling_counts_restarts_when_every_read_says_active(tmp_path: Path) -> None:
    """The window a single state read can fall into: active between two crashes."""
    from agent.join import settle
    from kedge.host import Host

    class Systemd(Host):
        def __init__(self, root: Path, restarting: bool) -> None:
            super().__init__(root)
            self.reads, self.restarting = 0, restarting

        def which(self, program: str) -> str | None:
            return "/usr/bin/systemctl"

        async def unit_properties(
            self, unit: str, *names: str, timeout: float = 10.0
        ) -> dict[str, str]:
            self.reads += 1
            restarts = self.reads // 4 if self.restarting else 0
            return {"ActiveState": "active", "NRestarts": str(restarts)}

    (tmp_path / "run/systemd/system").mkdir(parents=True)  # systemd runs edgecore's unit
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "etc/systemd/system/edgecore.service").write_text("[Service]\n")
    assert await settle(Systemd(tmp_path, restarting=True), 1.5) is False
    assert await settle(Systemd(tmp_path, restarting=False), 1.5) is True


def test_a_remote_runtime_without_a_cri_is_named(
    joinable: Board, agent: AgentRunner, dockerd_systemd: Dockerd, ntp: SntpServer,
    cloudcore: CloudcoreSim,
) -> None:  # fmt: skip
    joinable.configure(join_settings(dockerd_systemd, ntp, cloudcore, runtime="remote"))
    blocked = json.loads(join(agent, joinable).out)
    assert blocked["summary"].startswith("preflight failed: kubeedge-version (runtime remote, but")
    # the cri and cni checks say the same before keadm runs; past them, keadm's own words
    run = join(agent, joinable, "--ignore", "kubeedge-version,cri,cni")
    doc = json.loads(run.out)
    assert run.rc == 1
    assert [c["id"] for c in doc["causes"]] == ["cri-unavailable"]
    assert (
        doc["causes"][0]["summary"]
        == "no container runtime answers on /run/containerd/containerd.sock"
    )


@pytest.fixture
def foreign_installation_image(dockerd_systemd: Dockerd) -> Iterator[str]:
    """The three join images under a repository of their own, the installation package
    recorded as built for arm64 (this board is amd64); removed afterwards."""
    from tests.conftest import HUB_IMAGES
    from tests.harness.dockerd import tiny_rootfs_tar

    repo = "registry.example/foreign"
    refs = [f"{repo}/{ref.rsplit('/', 1)[-1]}" for ref in HUB_IMAGES]
    dockerd_systemd.load_image(tiny_rootfs_tar("arm64 edgecore"), refs[0], arch="arm64")
    for ref in refs[1:]:
        dockerd_systemd.import_tar(tiny_rootfs_tar(ref), ref)
    yield repo
    for ref in refs:
        dockerd_systemd.remove_image(ref)


def test_an_installation_image_for_another_architecture(
    joinable: Board, agent: AgentRunner, dockerd_systemd: Dockerd, ntp: SntpServer,
    cloudcore: CloudcoreSim, foreign_installation_image: str,
) -> None:  # fmt: skip
    """keadm runs the installation image to copy edgecore out and ignores how that ended
    (util/image.go@v1.13.0, CopyResources): an image built for another architecture
    leaves no edgecore, and the join ends in keadm's certificate timeout."""
    joinable.configure(join_settings(dockerd_systemd, ntp, cloudcore,
                                     image_repository=foreign_installation_image))  # fmt: skip
    check = agent(joinable, "check", "--json", "--only", "images").result("images")
    assert check.status.value == "fail"
    assert check.summary == (
        f"{foreign_installation_image}/installation-package:v1.13.0 is built for arm64, this board "
        "is amd64: keadm could not copy edgecore out of it"
    )
    run = join(agent, joinable, "--ignore", "images")
    doc = json.loads(run.out)
    assert run.rc == 1
    assert doc["causes"][0]["id"] == "edgecore-not-copied"
    assert not joinable.path("/usr/local/bin/edgecore").exists()


def test_an_installation_image_with_an_entrypoint_is_refused_before_the_join(
    joinable: Board, agent: AgentRunner, dockerd_systemd: Dockerd, ntp: SntpServer,
    cloudcore: CloudcoreSim,
) -> None:  # fmt: skip
    """Found on the real v1.13.0 keadm (tests/real): its docker copy step gives the
    container `/bin/sh -c "cp …"` as its command; an image with an entrypoint runs
    `ENTRYPOINT /bin/sh -c …` instead and copies nothing, and keadm does not notice."""
    from tests.conftest import HUB_IMAGES
    from tests.harness.dockerd import tiny_rootfs_tar

    repo = "registry.example/entrypoint"
    refs = [f"{repo}/{ref.rsplit('/', 1)[-1]}" for ref in HUB_IMAGES]
    dockerd_systemd.load_image(tiny_rootfs_tar("edgecore"), refs[0], arch="amd64",
                               entrypoint=["/bin/sh"])  # fmt: skip
    for ref in refs[1:]:
        dockerd_systemd.import_tar(tiny_rootfs_tar(ref), ref)
    try:
        joinable.configure(join_settings(dockerd_systemd, ntp, cloudcore, image_repository=repo))
        check = agent(joinable, "check", "--json", "--only", "images").result("images")
    finally:
        for ref in refs:
            dockerd_systemd.remove_image(ref)
    assert check.status.value == "fail"
    assert check.summary.startswith(
        f"{refs[0]} has an entrypoint (/bin/sh): keadm's copy step runs /bin/sh -c"
    )
    assert check.details["installation_image_entrypoint"] == ["/bin/sh"]


DROPIN = "/etc/systemd/system/edgecore.service.d/10-kedge-docker-host.conf"


def test_edgecore_is_pointed_at_the_docker_keadm_pulled_into(
    joinable: Board, agent: AgentRunner, dockerd_systemd: Dockerd
) -> None:
    """keadm leaves edgecore's dockerEndpoint empty and dockershim reads DOCKER_HOST from
    the unit's environment (libdocker/client.go@v1.13.0, getDockerClient), not keadm's:
    this board's docker is not at /var/run/docker.sock, so without kedge's drop-in
    edgecore would find no docker."""
    run = join(agent, joinable)
    doc = json.loads(run.out)
    assert run.rc == 0, run.out + run.err
    assert [c["action"] for c in doc["changes"] if c["target"] == DROPIN] == ["write"]
    assert (
        f"Environment=DOCKER_HOST=unix://{dockerd_systemd.socket}\n"
        in joinable.path(DROPIN).read_text()
    )
    edgecore_yaml = joinable.path("/etc/kubeedge/config/edgecore.yaml").read_text()
    assert "dockerEndpoint" not in edgecore_yaml
    reset = json.loads(agent(joinable, "reset", "--yes", "--json").out)
    assert DROPIN in [c["target"] for c in reset["changes"]]
    assert not joinable.path(DROPIN).exists()
    assert not joinable.path(DROPIN).parent.exists()


def test_a_drop_in_sending_edgecore_to_another_docker_is_named(
    joinable: Board, agent: AgentRunner, tmp_path: Path
) -> None:
    """An admin's later drop-in wins over kedge's (systemd reads them in name order)."""
    elsewhere = tmp_path / "elsewhere.sock"
    joinable.write(
        "/etc/systemd/system/edgecore.service.d/20-site.conf",
        f'[Service]\nEnvironment="DOCKER_HOST=unix://{elsewhere}"\n',
    )
    run = join(agent, joinable)
    doc = json.loads(run.out)
    assert run.rc == 1
    ids = [c["id"] for c in doc["causes"]]
    assert "docker-down" in ids
    down = doc["causes"][ids.index("docker-down")]
    assert down["summary"] == f"no docker answers at unix://{elsewhere}"
    assert "10-kedge-docker-host.conf" in down["remedy"]


def test_a_kernel_without_the_memory_cgroup_is_named_after_the_join(
    joinable: Board, agent: AgentRunner
) -> None:
    """keadm joins (the certificates come first); then kubelet's container manager inside
    edgecore refuses to start and edgecore crash-loops (container_manager_linux.go@v1.13.0)."""
    from tests.harness.board import PROC_CGROUPS

    joinable.write("/proc/cgroups", PROC_CGROUPS.replace("memory\t5\t80\t1", "memory\t0\t1\t0"))
    blocked = json.loads(join(agent, joinable).out)
    assert blocked["summary"].startswith("preflight failed: cgroup-driver (")
    run = join(agent, joinable, "--ignore", "cgroup-driver")
    doc = json.loads(run.out)
    assert run.rc == 1
    cause = next(c for c in doc["causes"] if c["id"] == "memory-cgroup")
    assert cause["summary"] == (
        "kubelet inside edgecore needs the memory cgroup, which this kernel has disabled"
    )

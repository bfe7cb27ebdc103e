"""leftovers, resources, node-name and ports."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psutil
import pytest

from tests.conftest import AgentRunner, _need_root_tools, check_one
from tests.harness.board import Board
from tests.harness.named_process import named_process
from tests.harness.netns import netns


def test_clean_board_has_no_leftovers(board: Board, agent: AgentRunner) -> None:
    result = check_one(agent, board, "leftovers")
    assert (result.status, result.summary) == ("pass", "no trace of an earlier join")


def test_half_finished_join_blocks(board: Board, agent: AgentRunner) -> None:
    # keadm's step 3 made the directories, then the join failed.
    board.mkdir("/etc/kubeedge/config")
    board.mkdir("/var/lib/kubeedge")
    result = check_one(agent, board, "leftovers")
    assert result.status == "fail"
    assert result.summary == "/etc/kubeedge is not empty (config) (keadm join refuses to start)"
    assert result.remedy.startswith("Run `kedge-agent reset`")


def test_running_edgecore_blocks(board: Board, agent: AgentRunner, tmp_path: Path) -> None:
    with named_process("edgecore", tmp_path) as pid:
        result = check_one(agent, board, "leftovers")
    assert result.status == "fail"
    assert result.details["blocking"] == [f"edgecore running (pid {pid})"]


def joined_record(node: str) -> str:
    return json.dumps({"phase": "joined", "node": node, "cloudcore": "198.18.0.2:10000",
                       "kubeedge_version": "v1.13.0", "started_at": "2026-11-29T09:00:00Z",
                       "finished_at": "2026-11-29T09:01:00Z"})  # fmt: skip


def test_a_joined_board_owns_what_a_fresh_one_would_call_leftovers(
    board: Board, agent: AgentRunner, tmp_path: Path
) -> None:
    board.mkdir("/etc/kubeedge/config")
    board.write("/var/lib/kedge-agent/join.json", joined_record("board-1"))
    with named_process("edgecore", tmp_path):
        result = check_one(agent, board, "leftovers")
    assert (result.status, result.summary) == ("pass", "joined as board-1 to 198.18.0.2:10000 since "
            "2026-11-29 09:01Z: what is in /etc/kubeedge and the running edgecore belong to that join")  # fmt: skip


def test_a_join_record_for_another_name_does_not_excuse_leftovers(
    board: Board, agent: AgentRunner
) -> None:
    board.mkdir("/etc/kubeedge/config")
    board.write("/var/lib/kedge-agent/join.json", joined_record("rk3000-old"))
    assert check_one(agent, board, "leftovers").status == "fail"


def test_stale_state_and_unit_warn(board: Board, agent: AgentRunner) -> None:
    board.write("/var/lib/kubeedge/edgecore.db", "")
    board.mkdir("/var/lib/edged/pods")
    board.write(
        "/etc/systemd/system/edgecore.service", "[Service]\nExecStart=/usr/local/bin/edgecore\n"
    )
    result = check_one(agent, board, "leftovers")
    assert result.status == "warn"
    assert result.details["stale"] == [
        "/var/lib/kubeedge is not empty",
        "/var/lib/edged is not empty",
        "stale unit /etc/systemd/system/edgecore.service",
    ]


def test_a_board_without_dev_kmsg_fails_before_the_join(board: Board, agent: AgentRunner) -> None:
    assert check_one(agent, board, "kmsg").status == "pass"
    board.path("/dev/kmsg").unlink()
    result = check_one(agent, board, "kmsg")
    assert result.status == "fail"
    assert result.summary.startswith("/dev/kmsg is missing: edgecore would exit as it starts")
    assert "systemd-nspawn --bind=/dev/kmsg" in result.remedy


def test_resources_pass_with_measured_values(board: Board, agent: AgentRunner) -> None:
    board.configure({"thresholds": {"cpu_sample_s": 0.05, "max_cpu_used_pct": 100}})
    result = check_one(agent, board, "resources")
    assert result.status == "pass"
    assert result.details["cpus"] == psutil.cpu_count()
    assert result.details["pid_max"] == 4194304  # read from the board
    assert result.details["mem_total_mb"] == psutil.virtual_memory().total // 2**20


def test_resources_below_limits_fail(board: Board, agent: AgentRunner) -> None:
    board.configure(
        {"thresholds": {"cpu_sample_s": 0.05, "min_cpus": 4096, "min_mem_total_mb": 10**8}}
    )
    result = check_one(agent, board, "resources")
    assert result.status == "fail"
    assert result.summary.startswith(f"CPUs {psutil.cpu_count()} (limit ≥ 4096); memory ")
    assert "(limit ≥ 100000000 MB)" in result.summary
    assert "[thresholds]" in result.remedy


def test_pid_headroom_uses_the_boards_pid_max(board: Board, agent: AgentRunner) -> None:
    board.write("/proc/sys/kernel/pid_max", f"{len(psutil.pids()) + 2}\n")
    board.configure({"thresholds": {"cpu_sample_s": 0.05}})
    result = check_one(agent, board, "resources")
    assert result.status == "fail"
    assert "PID headroom" in result.summary


def test_usage_over_limits_warns(board: Board, agent: AgentRunner) -> None:
    board.configure(
        {"thresholds": {"cpu_sample_s": 0.05, "max_disk_used_pct": 0.001, "max_cpu_used_pct": 100}}
    )
    result = check_one(agent, board, "resources")
    assert result.status == "warn"
    assert result.summary.startswith("disk used ")
    assert "edgecore's image GC starts at 85 % used" in result.summary


def test_less_free_disk_than_edgecores_eviction_threshold_fails(
    board: Board, agent: AgentRunner
) -> None:
    """Issue 26, item 5 (4): kedge's disk limits are edgecore's kubelet's, not looser —
    a board kedge passed went DiskPressure and lost the images kedge had pulled."""
    board.configure({"thresholds": {"cpu_sample_s": 0.05, "min_disk_free_pct": 99.99}})
    result = check_one(agent, board, "resources")
    assert result.status == "fail"
    assert "free disk" in result.summary
    assert "(limit ≥ 99.99 %)" in result.summary
    assert "taints the Node DiskPressure below 15 %" in result.summary


@pytest.mark.parametrize(
    ("hostname", "setting", "status", "suggestion"),
    [
        ("rk3000-board1", None, "pass", None),
        ("RK3000_Board1", None, "fail", "rk3000-board1"),
        ("board-", None, "fail", "board"),
        ("RK3000_Board1", "edge.node-1", "pass", None),
        ("x", "Edge Node 1", "fail", "edge-node-1"),
    ],
)
def test_node_name(
    board: Board,
    agent: AgentRunner,
    hostname: str,
    setting: str | None,
    status: str,
    suggestion: str | None,
) -> None:
    board.write("/etc/hostname", hostname + "\n")
    board.configure({"node_name": setting} if setting else {})
    result = check_one(agent, board, "node-name")
    assert result.status == status
    assert result.details["node_name"] == (setting or hostname)
    if suggestion:
        assert "default-edge-node" in result.summary
        assert result.remedy.startswith(f'Set node_name = "{suggestion}"')


@pytest.mark.parametrize(
    ("version", "broker", "ports"),
    [("v1.13.0", "the MQTT container keadm starts", (1883, 9001)),
     ("v1.23.1", "the eclipse-mosquitto pod the cloud's chart runs on every edge node", (1883,))],
)  # fmt: skip
def test_ports_in_an_isolated_network(
    board: Board, tmp_path: Path, version: str, broker: str, ports: tuple[int, ...]
) -> None:
    """Up to v1.15 keadm's MQTT container takes 1883 and 9001; from v1.16 keadm starts no
    broker and the cloud chart's hostNetwork mosquitto pod takes 1883 only (issue 26)."""
    _need_root_tools("ip")
    board.configure({"kubeedge_version": version})
    agent_bin = str(Path(sys.executable).with_name("kedge-agent"))
    argv = [agent_bin, "check", "--json", "--only", "ports", "--root", str(board.root),
            "--config", str(board.config_path)]  # fmt: skip
    with netns() as ns:
        free = json.loads(ns.run(*argv).stdout)["checks"][0]
        with (
            ns.listener(1883, tmp_path) as mqtt,
            ns.listener(10350, tmp_path) as edgecore,
            ns.listener(9001, tmp_path) as websocket,
        ):
            proc = ns.run(*argv)
            names = {pid: psutil.Process(pid).name() for pid in (mqtt, edgecore, websocket)}
    shown = ", ".join(map(str, sorted((*ports, 10350))))
    assert (free["status"], free["summary"]) == ("pass", f"ports {shown} are free")
    taken = json.loads(proc.stdout)["checks"][0]
    assert proc.returncode == 1
    assert taken["status"] == "fail"
    expected = [
        f"10350 (edgecore) is taken by {names[edgecore]} (pid {edgecore}) on 127.0.0.1",
        f"1883 ({broker}) is taken by {names[mqtt]} (pid {mqtt}) on 127.0.0.1",
    ]
    if 9001 in ports:
        expected.append(
            f"9001 ({broker}) is taken by {names[websocket]} (pid {websocket}) on 127.0.0.1"
        )
    assert sorted(taken["details"]["taken"]) == expected
    assert "systemctl disable --now mosquitto" in taken["remedy"]


def test_a_busy_cpu_warns(board: Board, agent: AgentRunner) -> None:
    import subprocess
    import sys

    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(psutil.cpu_count() or 1)
    ]
    try:
        board.configure({"thresholds": {"cpu_sample_s": 0.5, "max_cpu_used_pct": 50}})
        result = check_one(agent, board, "resources")
    finally:
        for p in burners:
            p.kill()
            p.wait(10)
    assert result.status == "warn"
    assert result.summary.startswith("CPU busy ")
    assert result.summary.endswith("(limit ≤ 50 %)")


def test_leftovers_follow_the_target_releases_data_directory(
    board: Board, agent: AgentRunner
) -> None:
    board.mkdir("/var/lib/kubelet/pods")  # edgecore's data directory from KubeEdge v1.20
    assert check_one(agent, board, "leftovers").status == "pass"  # v1.13 keeps it elsewhere
    board.configure({"kubeedge_version": "v1.23.1", "runtime": "containerd"})
    stale = check_one(agent, board, "leftovers")
    assert (stale.status, stale.summary) == ("warn", "/var/lib/kubelet is not empty")


@pytest.mark.parametrize(
    ("resolv", "upstream", "status", "said"),
    [("nameserver 192.0.2.53\n", None, "pass", "pods get nameserver 192.0.2.53"),
     ("nameserver 127.0.0.53\noptions edns0\n", "nameserver 192.0.2.53\n", "warn",
      "/etc/resolv.conf names only 127.0.0.53, a loopback stub a pod cannot reach"),
     ("# empty\n", None, "warn", "/etc/resolv.conf names no nameserver")],
)  # fmt: skip
def test_pods_dns_is_not_a_loopback_stub(
    board: Board, agent: AgentRunner, resolv: str, upstream: str | None, status: str, said: str
) -> None:
    """Issue 26, item 5 (10): edgecore hands pods the host's /etc/resolv.conf; on a
    systemd-resolved board that is the 127.0.0.53 stub, unreachable from a pod."""
    board.write("/etc/resolv.conf", resolv)
    if upstream:
        board.write("/run/systemd/resolve/resolv.conf", upstream)
    result = check_one(agent, board, "pod-dns")
    assert result.status == status
    assert result.summary.startswith(said)
    if upstream:
        assert (
            "resolvConf to /run/systemd/resolve/resolv.conf (it names 192.0.2.53)" in result.remedy
        )

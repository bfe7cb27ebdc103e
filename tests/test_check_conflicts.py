"""conflicts: k3s and kubeadm's kubelet, found by files, units, processes, cgroups, port."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import psutil

from tests.conftest import AgentRunner, _need_root_tools
from tests.harness.board import Board
from tests.harness.named_process import named_process
from tests.harness.netns import netns


def conflicts(agent: AgentRunner, board: Board) -> tuple[str, str, list[str], str]:
    r = agent(board, "check", "--json", "--only", "conflicts").result("conflicts")
    return r.status.value, r.summary, [f["what"] for f in r.details["findings"]], r.remedy


def test_clean_board_passes(board: Board, agent: AgentRunner) -> None:
    status, summary, found, _ = conflicts(agent, board)
    assert (status, summary, found) == ("pass", "no k3s, kubelet or kube-proxy found", [])


def test_k3s_install_is_found_by_binary_dirs_and_units(board: Board, agent: AgentRunner) -> None:
    board.write("/usr/local/bin/k3s", "#!/bin/sh\n", 0o755)
    board.mkdir("/etc/rancher/k3s")
    board.mkdir("/var/lib/rancher/k3s/agent")
    board.write(
        "/etc/systemd/system/k3s-agent.service", "[Service]\nExecStart=/usr/local/bin/k3s agent\n"
    )
    status, _, found, remedy = conflicts(agent, board)
    assert status == "fail"
    assert found == [
        "binary /usr/local/bin/k3s",
        "directory /etc/rancher/k3s",
        "directory /var/lib/rancher/k3s",
        "unit /etc/systemd/system/k3s-agent.service",
    ]
    assert "k3s-agent-uninstall.sh" in remedy


def test_a_running_k3s_is_found_by_its_executable(
    board: Board, agent: AgentRunner, tmp_path: Path
) -> None:
    with named_process("k3s", tmp_path) as pid:
        status, _, found, _ = conflicts(agent, board)
    assert status == "fail"
    assert f"process k3s (pid {pid})" in found


def test_a_running_kubelet_and_kube_proxy_are_found(
    board: Board, agent: AgentRunner, tmp_path: Path
) -> None:
    with (
        named_process("kubelet", tmp_path) as kubelet,
        named_process("kube-proxy", tmp_path) as proxy,
    ):
        status, summary, found, remedy = conflicts(agent, board)
    assert status == "fail"
    assert f"process kubelet (pid {kubelet})" in found
    assert f"process kube-proxy (pid {proxy})" in found
    assert "kubeadm reset -f" in remedy
    assert f"pid {kubelet}" in summary


def test_kubelet_found_by_files_and_enabled_unit(board: Board, agent: AgentRunner) -> None:
    board.write("/etc/kubernetes/kubelet.conf", "apiVersion: v1\n")
    board.write("/var/lib/kubelet/config.yaml", "kind: KubeletConfiguration\n")
    board.write("/lib/systemd/system/kubelet.service", "[Service]\n")
    board.symlink(
        "/etc/systemd/system/multi-user.target.wants/kubelet.service",
        "/lib/systemd/system/kubelet.service",
    )
    _, _, found, _ = conflicts(agent, board)
    assert found == [
        "enabled by /etc/systemd/system/multi-user.target.wants/kubelet.service",
        "file /etc/kubernetes/kubelet.conf",
        "file /var/lib/kubelet/config.yaml",
    ]


def test_active_units_are_asked_of_systemctl(board: Board, agent: AgentRunner) -> None:
    board.install_sim("systemctl", "tests.kubeedge_sim.systemctl", "/usr/bin")
    board.write(
        "/var/lib/kedge-sim/systemd.json",
        json.dumps(
            {
                "units": {
                    "kubelet.service": {"active": "active"},
                    "k3s.service": {"active": "activating"},
                }
            }
        ),
    )
    _, _, found, _ = conflicts(agent, board)
    assert found == ["k3s.service is active", "kubelet.service is active"]


def test_kubepods_cgroups_still_holding_pods_are_a_conflict(
    board: Board, agent: AgentRunner
) -> None:
    board.mkdir("/sys/fs/cgroup/kubepods.slice")
    board.write("/sys/fs/cgroup/memory/kubepods/besteffort/pod1/cgroup.procs", "4242\n4243\n")
    status, _, found, remedy = conflicts(agent, board)
    assert status == "fail"
    assert found == ["cgroup /sys/fs/cgroup/memory/kubepods holds processes (pid 4242, 4243)"]
    assert "k3s-killall.sh" in remedy


def test_empty_kubepods_cgroups_only_warn(board: Board, agent: AgentRunner) -> None:
    """What any kubelet leaves until a reboot — edgecore's own after a reset too (seen on
    the real v1.23.1 edgecore: its rejoin was refused): edgecore adopts them."""
    board.mkdir("/sys/fs/cgroup/memory/kubepods")
    board.mkdir("/sys/fs/cgroup/kubepods.slice")
    status, summary, found, remedy = conflicts(agent, board)
    assert (status, found) == ("warn", [])
    assert summary.endswith("/sys/fs/cgroup/kubepods.slice, /sys/fs/cgroup/memory/kubepods")
    assert "adopts" in remedy


def test_port_10250_taken_in_an_isolated_network(board: Board, tmp_path: Path) -> None:
    _need_root_tools("ip")
    agent_bin = str(Path(sys.executable).with_name("kedge-agent"))
    argv = [agent_bin, "check", "--json", "--only", "conflicts", "--root", str(board.root),
            "--config", str(board.config_path)]  # fmt: skip
    with netns() as ns:
        clean = json.loads(ns.run(*argv).stdout)
        assert clean["checks"][0]["status"] == "pass"
        with ns.listener(10250, tmp_path) as pid:
            proc = ns.run(*argv)
            name = psutil.Process(pid).name()
    result = json.loads(proc.stdout)["checks"][0]
    assert proc.returncode == 1
    assert result["status"] == "fail"
    assert [f["what"] for f in result["details"]["findings"]] == [
        f"port 10250 taken by {name} (pid {pid}) on 127.0.0.1"
    ]

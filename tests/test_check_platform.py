"""arch, keadm and kubeedge-version on fixture boards."""

from __future__ import annotations

import pytest

from tests.conftest import AgentRunner, check_one
from tests.harness.board import Board


def test_arch_passes_and_names_keadm_arch(board: Board, agent: AgentRunner) -> None:
    board.path("/usr/local/bin/keadm").unlink()
    board.install_elf("/usr/local/bin/keadm", "amd64")
    result = check_one(agent, board, "arch")
    assert result.status == "pass"
    assert result.summary == "x86_64 (KubeEdge arch amd64); keadm matches"
    assert result.details["keadm_elf"] == "x86-64"


def test_arch_fails_on_a_keadm_for_another_architecture(board: Board, agent: AgentRunner) -> None:
    # The field story's mistake: an arm64 keadm downloaded onto the x86 VM.
    board.path("/usr/local/bin/keadm").unlink()
    board.install_elf("/usr/local/bin/keadm", "arm64")
    run = agent(board, "check", "--json", "--only", "arch,keadm")
    arch = run.result("arch")
    assert arch.status == "fail"
    assert arch.summary == "board is amd64 (x86_64) but /usr/local/bin/keadm is built for arm64"
    assert "keadm-v1.13.0-linux-amd64.tar.gz" in arch.remedy
    keadm = run.result("keadm")
    assert keadm.status == "fail"
    assert "does not run" in keadm.summary
    assert "Exec format error" in keadm.summary


def test_arch_without_keadm_only_maps_the_machine(board: Board, agent: AgentRunner) -> None:
    board.path("/usr/local/bin/keadm").unlink()
    result = check_one(agent, board, "arch")
    assert result.status == "pass"
    assert result.details == {"machine": "x86_64", "kubeedge_arch": "amd64"}


@pytest.mark.parametrize(
    ("machine", "expected"), [("aarch64", "arm64"), ("armv7l", "arm"), ("x86_64", "amd64")]
)
def test_machine_names_map_to_kubeedge_arches(machine: str, expected: str) -> None:
    from kedge.kubeedge import ARCH_BY_MACHINE

    assert ARCH_BY_MACHINE[machine] == expected


async def test_arch_fails_on_an_unsupported_machine(board: Board) -> None:
    from agent.checks.context import CheckContext
    from agent.checks.platform import arch
    from agent.docker_api import DockerClient
    from agent.settings import load_settings
    from kedge.host import Host

    host = Host(board.root, machine="riscv64")
    async with DockerClient("/nonexistent.sock") as docker:
        outcome = await arch(CheckContext(load_settings(board.config_path), host, docker))
    assert outcome.status == "fail"
    assert outcome.summary == "riscv64 is not an architecture KubeEdge ships binaries for"
    assert "arm64" in outcome.remedy


def test_keadm_passes_at_the_target_version(board: Board, agent: AgentRunner) -> None:
    result = check_one(agent, board, "keadm")
    assert result.status == "pass"
    assert result.summary == "/usr/local/bin/keadm v1.13.0"


def test_keadm_version_mismatch_fails_with_both_fixes(board: Board, agent: AgentRunner) -> None:
    board.install_keadm("v1.12.1")
    result = check_one(agent, board, "keadm")
    assert result.status == "fail"
    assert result.summary == "keadm is v1.12.1, the target KubeEdge version is v1.13.0"
    assert 'set kubeedge_version = "v1.12.1"' in result.remedy
    assert "keadm-v1.13.0-linux-amd64.tar.gz" in result.remedy


def test_keadm_missing_fails_with_install_commands(board: Board, agent: AgentRunner) -> None:
    board.path("/usr/local/bin/keadm").unlink()
    result = check_one(agent, board, "keadm")
    assert result.status == "fail"
    assert result.summary == "keadm not found on PATH"
    assert (
        "install -m 0755 keadm-v1.13.0-linux-amd64/keadm/keadm /usr/local/bin/keadm"
        in result.remedy
    )


def test_keadm_that_errors_fails_with_its_message(board: Board, agent: AgentRunner) -> None:
    board.write(
        "/usr/local/bin/keadm", "#!/bin/sh\necho 'Error: unknown command' >&2\nexit 1\n", 0o755
    )
    result = check_one(agent, board, "keadm")
    assert result.status == "fail"
    assert result.summary == "`keadm version` exited 1 without a version: Error: unknown command"


def test_keadm_that_hangs_is_cut_off(board: Board, agent: AgentRunner) -> None:
    board.write("/usr/local/bin/keadm", "#!/bin/sh\nexec sleep 600\n", 0o755)
    board.configure({"check_timeout_s": 1})
    result = check_one(agent, board, "keadm")
    assert result.status == "error"
    assert result.summary == "no result within 1 s"


def test_docker_with_kubeedge_1_14_fails(board: Board, agent: AgentRunner) -> None:
    board.configure({"kubeedge_version": "v1.14.2"})
    result = agent(board, "check", "--json", "--only", "kubeedge-version").result(
        "kubeedge-version"
    )
    assert result.status == "fail"
    assert result.summary == "KubeEdge v1.14.2 cannot use docker: dockershim was removed in v1.14"
    assert 'kubeedge_version = "v1.13.0"' in result.remedy
    assert "cri-dockerd" in result.remedy


def test_docker_with_1_13_works_but_is_unmaintained(board: Board, agent: AgentRunner) -> None:
    result = agent(board, "check", "--json", "--only", "kubeedge-version").result(
        "kubeedge-version"
    )
    assert result.status == "warn"
    assert "unix:///var/run/dockershim.sock" in result.summary
    assert "KubeEdge v1.13.0 no longer gets fixes" in result.summary
    assert "Plan the upgrade to v1.23.1: the cloud first" in result.remedy
    assert 'runtime = "containerd"' in result.remedy


def test_a_release_with_known_security_holes_fails_naming_the_advisory_and_the_fix(
    board: Board, agent: AgentRunner
) -> None:
    sock = board.write("/run/containerd/containerd.sock", "")  # a path on this machine
    board.configure({"kubeedge_version": "v1.23.0", "runtime": "containerd",
                     "remote_runtime_endpoint": f"unix://{sock}"})  # fmt: skip
    result = check_one(agent, board, "kubeedge-version")
    assert result.status == "fail"  # kedge does not join it
    assert "kedge never installs v1.23.0: CVE-2026-62371 and CVE-2026-62182" in result.summary
    assert "NodeUpgradeJob" in result.summary
    assert "(fixed in v1.23.1)" in result.summary
    assert result.remedy.startswith('Set kubeedge_version = "v1.23.1"')
    board.configure({"kubeedge_version": "v1.23.1", "runtime": "containerd",
                     "remote_runtime_endpoint": f"unix://{sock}"})  # fmt: skip
    fixed = check_one(agent, board, "kubeedge-version")
    assert (fixed.status, fixed.summary) == ("pass", f"v1.23.1 with CRI runtime at unix://{sock}")


@pytest.mark.parametrize("tag", ["v1.12.7", "v1.24.0"])
def test_a_release_kedge_does_not_drive_is_one_clear_line(
    board: Board, agent: AgentRunner, tag: str
) -> None:
    board.configure({"kubeedge_version": tag})
    run = agent(board, "check")
    assert run.rc == 2
    assert f"kedge drives KubeEdge v1.13.x to v1.23.x; {tag} is outside them" in run.err
    assert "Traceback" not in run.err


def test_remote_runtime_needs_its_socket(board: Board, agent: AgentRunner) -> None:
    sock = board.path("/run/cri-dockerd.sock")  # the setting names a path on this machine
    board.configure({"kubeedge_version": "v1.23.1", "runtime": "remote",
                     "remote_runtime_endpoint": f"unix://{sock}"})  # fmt: skip
    missing = check_one(agent, board, "kubeedge-version")
    assert missing.status == "fail"  # keadm join stops at once: nothing to wait for
    assert missing.summary.startswith(f"runtime remote, but {sock} does not exist")
    board.write("/run/cri-dockerd.sock", "")
    ok = check_one(agent, board, "kubeedge-version")
    assert ok.status == "pass"


@pytest.mark.parametrize(
    ("tool", "step", "package"),
    [("sudo", "at its last step", "sudo"), ("bash", "at its first step", "bash"),
     ("pidof", "at its first step", "sysvinit-utils")],
)  # fmt: skip
def test_join_tools_fail_without_bash_pidof_or_sudo(
    board: Board, agent: AgentRunner, tool: str, step: str, package: str
) -> None:
    board.install_systemd()
    board.path(f"/usr/bin/{tool}").unlink()
    result = check_one(agent, board, "join-tools")
    assert result.status.value == "fail"
    assert result.summary.startswith(f"{tool} not found: keadm join would fail {step}")
    assert result.remedy == f"apt install {package}"


def test_join_tools_pass_with_all(board: Board, agent: AgentRunner) -> None:
    board.install_systemd()
    result = check_one(agent, board, "join-tools")
    assert (result.status.value, result.summary) == (
        "pass",
        "bash, pidof and sudo are installed; keadm starts edgecore through systemd "
        "(`file /sbin/init` succeeds)",
    )


def test_without_file_keadm_needs_no_sudo(board: Board, agent: AgentRunner) -> None:
    """keadm's test for systemd is `file /sbin/init`: without `file` it starts edgecore
    itself, and sudo is not needed (the real keadm does so: tests/real/)."""
    board.install_systemd()
    board.path("/usr/bin/file").unlink()
    board.path("/usr/bin/sudo").unlink()
    result = check_one(agent, board, "join-tools")
    assert result.status.value == "pass"
    assert result.summary.endswith(
        "keadm starts edgecore itself (`file /sbin/init` fails or there is no `file`)"
    )

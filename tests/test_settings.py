"""Settings layers and the one-line errors for every way a user can get them wrong."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.settings import load_settings
from kedge.errors import ConfigError
from tests.conftest import AgentRunner
from tests.harness.board import Board


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEDGE_AGENT_CONFIG", str(write(tmp_path, "")))
    s = load_settings()
    assert s.kubeedge_version == "v1.13.0"
    assert s.runtime == "docker"
    assert s.cgroup_driver == "auto"
    assert s.state_dir == Path("/var/lib/kedge-agent")
    assert s.clock_warn_s == 10
    assert s.clock_fail_s == 60
    assert s.thresholds.min_mem_total_mb == 256


def test_layers_file_then_env_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = write(
        tmp_path,
        'node_name = "from-file"\ncgroup_driver = "systemd"\nclock_warn_s = 5\n'
        "[thresholds]\nmin_disk_free_mb = 100\n",
    )
    monkeypatch.setenv("KEDGE_AGENT_CGROUP_DRIVER", "cgroupfs")
    monkeypatch.setenv("KEDGE_AGENT_THRESHOLDS__MIN_CPUS", "2")
    monkeypatch.setenv("KEDGE_AGENT_NTP_SERVERS", '["127.0.0.1:1123", "ntp.example"]')
    s = load_settings(cfg, {"node_name": "from-flag", "cloudcore": None})
    assert s.node_name == "from-flag"  # flag beats file
    assert s.cgroup_driver == "cgroupfs"  # env beats file
    assert s.clock_warn_s == 5  # file beats default
    assert s.thresholds.min_disk_free_mb == 100
    assert s.thresholds.min_cpus == 2  # nested env merges with the file's table
    assert s.ntp_servers == ["127.0.0.1:1123", "ntp.example"]
    assert s.cloudcore is None  # an unset flag does not override


def test_docker_host_follows_docker_host_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = write(tmp_path, "")
    assert load_settings(cfg).docker_socket == "/var/run/docker.sock"
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/other.sock")
    assert load_settings(cfg).docker_socket == "/run/other.sock"
    monkeypatch.setenv("KEDGE_AGENT_DOCKER_HOST", "/run/mine.sock")
    assert load_settings(cfg).docker_socket == "/run/mine.sock"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'cgroup_driver = "system"',
            "key 'cgroup_driver': Input should be 'auto', 'systemd' or 'cgroupfs', got 'system'",
        ),
        ('cloudcore = "10.0.0.1"', "key 'cloudcore': expected host:port"),
        (
            'kubeedge_version = "1.13.0"',
            "key 'kubeedge_version': expected a release tag like v1.13.0",
        ),
        ('clock_warn_s = "soon"', "key 'clock_warn_s': Input should be a valid number"),
        ("nodename = 'x'", "unknown key 'nodename' (known keys: "),
        (
            "[thresholds]\nmin_disk = 1",
            "unknown key 'thresholds.min_disk' (known keys: cpu_sample_s",
        ),
        (
            "[thresholds]\nmin_cpus = 0",
            "key 'thresholds.min_cpus': Input should be greater than or equal to 1",
        ),
        (
            'ntp_servers = ["ntp.example:99999"]',
            "key 'ntp_servers': expected a list of host or host:port",
        ),
        ('docker_host = "tcp://10.0.0.1:2375"', "key 'docker_host': expected a unix socket"),
        (
            "join_timeout_s = 120",
            "key 'join_timeout_s': must be at least 330 s: keadm itself waits up to 300 s",
        ),
        (
            "clock_warn_s = 60\nclock_fail_s = 30",
            "clock_warn_s (60) must be below clock_fail_s (30)",
        ),
    ],
)
def test_bad_values_name_file_key_and_form(tmp_path: Path, text: str, expected: str) -> None:
    cfg = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    message = str(err.value)
    assert message.startswith(f"{cfg}: ")
    assert expected in message
    assert "\n" not in message


def test_toml_syntax_error_gives_line_and_column(tmp_path: Path) -> None:
    cfg = write(tmp_path, 'cloudcore = "10.0.0.1:10000"\nnode_name = rk3000-1\n')
    with pytest.raises(
        ConfigError, match=r"not valid TOML: Invalid value \(at line 2, column 13\)"
    ):
        load_settings(cfg)


def test_bad_env_value_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEDGE_AGENT_NTP_SERVERS", "pool.ntp.org")  # not JSON
    with pytest.raises(ConfigError, match="KEDGE_AGENT_NTP_SERVERS"):
        load_settings(write(tmp_path, ""))


def test_token_value_is_never_echoed(tmp_path: Path) -> None:
    cfg = write(tmp_path, 'token = "s3cret token with spaces"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert "s3cret" not in str(err.value)
    assert "key 'token'" in str(err.value)


def test_explicit_config_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "missing.toml")


def test_default_config_may_be_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agent.settings.DEFAULT_CONFIG", tmp_path / "absent.toml")
    assert load_settings().node_name is None


def test_cli_reports_config_error_with_exit_2(board: Board, agent: AgentRunner) -> None:
    board.config_path.write_text('clock_fail_s = "a minute"\n')
    run = agent(board, "check")
    assert run.rc == 2
    assert run.out == ""
    assert run.err == (
        f"kedge-agent: error: {board.config_path}: key 'clock_fail_s': "
        "Input should be a valid number, unable to parse string as a number, got 'a minute'\n"
    )


def test_no_traceback_for_user_errors_in_a_real_process(board: Board) -> None:
    board.config_path.write_text("[thresholds\n")
    proc = subprocess.run(
        [sys.executable, "-m", "agent", "check", "--config", str(board.config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"kedge-agent: error: {board.config_path}: not valid TOML")

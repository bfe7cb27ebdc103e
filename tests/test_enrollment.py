"""The enrollment fills what the settings leave unset, never what the user set."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from agent import enrollment
from agent.settings import load_settings
from kedge.errors import ConfigError
from kedge.wire import BrokerAnswer

TOKEN = "a" * 64 + ".eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDB9.c2ln"


def enrolled(root: Path) -> Path:
    state = root / "var/lib/kedge-agent"
    answer = enrollment.Enrollment(
        cloud_api_url="http://10.1.1.1:8080",
        node_name="board-7",
        cloudcore="10.1.1.1:10000",
        cloudcore_cert_port=10002,
        token=SecretStr(TOKEN),
        token_expires_at=None,
        kubeedge_version="v1.13.1",
        mqtt=BrokerAnswer(
            host="10.1.1.1", port=1883, tls=False, username="board-7", password=SecretStr("pw")
        ),
        enrolled_at=0,
    )
    enrollment.save(state, answer)
    return state


def test_enrollment_fills_unset_settings_and_files_are_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEDGE_AGENT_CONFIG", raising=False)
    state = enrolled(tmp_path)
    config = tmp_path / "agent.toml"
    config.write_text('cloudcore = "192.168.9.9:10000"\n')
    s = load_settings(config, root=tmp_path)
    assert s.cloudcore == "192.168.9.9:10000"  # the user's own setting wins
    assert (s.node_name, s.kubeedge_version, s.cloud_api_url) == (
        "board-7",
        "v1.13.1",
        "http://10.1.1.1:8080",
    )
    assert s.token is not None
    assert s.token.get_secret_value() == TOKEN
    assert (s.mqtt.host, s.mqtt.username, s.mqtt.password_file) == (
        "10.1.1.1",
        "board-7",
        state / "mqtt.password",
    )
    for name in ("enrollment.json", "mqtt.password"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600
    flagged = load_settings(config, {"token_file": tmp_path / "t"}, root=tmp_path)
    assert flagged.token is None  # a token_file of the user's beats the enrolled token


def test_a_damaged_enrollment_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KEDGE_AGENT_CONFIG", raising=False)
    state = enrolled(tmp_path)
    (state / "enrollment.json").write_text("{}")
    config = tmp_path / "agent.toml"
    config.write_text("")
    with pytest.raises(ConfigError, match="not an enrollment kedge-agent wrote: remove it"):
        load_settings(config, root=tmp_path)


@pytest.mark.faults
@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("cloudcore", "1.2.3.4:10000 --help", "cloudcore: expected host:port"),
        (
            "cloudcore_cert_port",
            0,
            "cloudcore_cert_port: Input should be greater than or equal to 1",
        ),
        ("kubeedge_version", "../../../x", "kubeedge_version:"),
        ("token", "abc def", "token: expected the output of `keadm gettoken`"),
    ],
)
def test_hostile_enrollment_values_are_refused_like_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, value: object, says: str
) -> None:
    import json

    monkeypatch.delenv("KEDGE_AGENT_CONFIG", raising=False)
    state = enrolled(tmp_path)
    doc = json.loads((state / "enrollment.json").read_text())
    doc[key] = value
    (state / "enrollment.json").write_text(json.dumps(doc))
    config = tmp_path / "agent.toml"
    config.write_text("")
    with pytest.raises(ConfigError) as err:
        load_settings(config, root=tmp_path)
    assert str(err.value).startswith(f"{state / 'enrollment.json'}: {says}")
    assert "kedge-agent enroll --again" in str(err.value)


@pytest.mark.faults
def test_a_leftover_temporary_file_cannot_widen_the_secrets_mode(tmp_path: Path) -> None:
    state = tmp_path / "var/lib/kedge-agent"
    state.mkdir(parents=True)
    for name in (".enrollment.json.tmp", ".mqtt.password.tmp"):
        (state / name).write_text("old")
        (state / name).chmod(0o644)
    enrolled(tmp_path)
    for name in ("enrollment.json", "mqtt.password"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600

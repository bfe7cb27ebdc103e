"""The wire contract: committed schemas are fresh, documented examples are valid, readers
are forward compatible and secrets travel without being shown."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from kedge.wire import SCHEMAS, BrokerAnswer, Enrolled, HealthReport
from kedge.wire.schemas import render

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "docs" / "schemas"
EXAMPLE_RE = re.compile(r"<!-- wire: ([a-z-]+) -->\n```json\n(.*?)```", re.DOTALL)


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_committed_schema_matches_the_model(name: str) -> None:
    committed = (SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8")
    assert committed == render(name), (
        f"docs/schemas/{name}.schema.json is stale: run .venv/bin/python -m kedge.wire.schemas"
    )


def test_no_schema_without_a_model() -> None:
    assert {p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.json")} == set(SCHEMAS)


def _examples() -> list[tuple[str, str, str]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        found += [(doc.name, name, body) for name, body in EXAMPLE_RE.findall(text)]
    return found


def test_every_json_example_in_the_mqtt_doc_names_its_payload() -> None:
    text = (ROOT / "docs" / "mqtt.md").read_text(encoding="utf-8")
    assert text.count("```json") == len(EXAMPLE_RE.findall(text)) >= 5


@pytest.mark.parametrize(("doc", "name", "body"), _examples(), ids=lambda v: str(v)[:24])
def test_documented_example_is_valid_and_complete(doc: str, name: str, body: str) -> None:
    assert name in SCHEMAS, f"{doc}: unknown payload {name!r}"
    # Strict: an example must not show a key kedge never sends.
    SCHEMAS[name].model_validate(json.loads(body), extra="forbid")


def test_a_newer_boards_extra_keys_are_ignored_by_a_reader() -> None:
    example = dict(next(json.loads(b) for _, n, b in _examples() if n == "health"))
    example["fan_rpm"] = 4200  # a key a future board might add
    report = HealthReport.model_validate(example)
    assert report.node == "rk3000-board1"
    with pytest.raises(ValidationError, match="fan_rpm"):
        HealthReport.model_validate(example, extra="forbid")


def test_secrets_are_sent_but_never_shown() -> None:
    answer = Enrolled(
        node_name="b1", cloudcore="10.0.0.1:10000", cloudcore_cert_port=10002,
        token=SecretStr("tok-123"), token_expires_at=None, kubeedge_version="v1.13.0",
        mqtt=BrokerAnswer(host="10.0.0.1", port=1883, tls=False, username="b1",
                          password=SecretStr("pw-456")),
    )  # fmt: skip
    sent = json.loads(answer.to_json())
    assert (sent["token"], sent["mqtt"]["password"]) == ("tok-123", "pw-456")
    for shown in (repr(answer), str(answer), str(answer.model_dump())):
        assert "tok-123" not in shown
        assert "pw-456" not in shown
    assert Enrolled.model_validate(sent).token.get_secret_value() == "tok-123"

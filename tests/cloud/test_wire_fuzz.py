"""Fuzzing as a test tier (issue 25): payloads generated from the kedge.wire models, and
mutations of them, published by a board with its own identity through a real mosquitto
into a real `kedge-cloud-api serve`. Afterwards the ingest is alive, an honest report is
stored, and every API answer parses as strict JSON. A few hundred examples here;
`bench/fuzz_ingest.py` runs ten thousand."""

from __future__ import annotations

import pytest

from tests.harness.cloud_api import Api
from tests.harness.fleet import Board, health
from tests.harness.fleet_api import ingest_connected
from tests.harness.http import get_text
from tests.harness.wait import wait_for
from tests.harness.wire_fuzz import fuzz_ingest, strict_answers

pytestmark = pytest.mark.faults
EXAMPLES = 300


def test_no_payload_stops_the_ingest_or_spoils_a_page(api: Api, boards: dict[str, Board]) -> None:
    ingest_connected(api)
    fuzzer, honest = boards["rk3000-1"], boards["rk3000-2"]
    sent = fuzz_ingest(api.url, api.token, fuzzer, EXAMPLES)
    assert sent >= EXAMPLES * 0.9
    honest.send("health", health(honest.node, cpu=42.0))

    def stored() -> bool:
        _, _, body = api.call("GET", f"/api/v1/nodes/{honest.node}", token=api.token)
        return bool(body and body.get("cpu_percent") == 42.0)

    wait_for(stored, timeout=30, what="the honest report after the fuzz")
    status, text = get_text(api.url + "/metrics", api.token)
    assert status == 200
    assert "kedge_ingest_connected 1" in text.splitlines()
    assert "kedge_ingest_crashes_total 0" in text.splitlines()
    assert api.call("GET", "/readyz")[0] == 200
    strict_answers(api.url, api.token, fuzzer.node)
    assert "Traceback" not in (api.state.parent / "server.log").read_text()

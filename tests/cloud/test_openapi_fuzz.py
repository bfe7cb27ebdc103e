"""schemathesis over the served OpenAPI document: generated requests (valid and not) get
no 5xx, and every answer matches the document (status, content type, schema). The
schemathesis CLI drives the real service over the simulated master's link."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.master import master

pytestmark = pytest.mark.netns
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))
CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_no_server_errors_and_answers_match_the_document(tmp_path: Path) -> None:
    with master(tmp_path) as m:
        m.start()
        out = subprocess.run(
            [
                SCHEMATHESIS,
                "--config-file",
                str(CONFIG),
                "run",
                f"{m.url}/api/v1/openapi.json",
                "--header",
                f"Authorization: Bearer {m.token}",
                "--max-examples",
                "25",
                "--seed",
                "20261127",
                "--request-timeout",
                "30",
                "--no-color",
                "--suppress-health-check",
                "all",
            ],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
            cwd=tmp_path,
        )
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert " passed" in out.stdout

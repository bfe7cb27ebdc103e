"""`make demo` end to end, as CI sees it (not on a terminal, so it stops by itself): the
four boards' outcomes, the verify job and the fleet table; its dashboard picture is
saved as build/test-artifacts/demo-dashboard.png."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.netns

ARTIFACTS = Path(
    os.environ.get("KEDGE_TEST_ARTIFACTS", Path(__file__).parents[1] / "build" / "test-artifacts")
)


def test_make_demo_tells_the_four_board_story() -> None:
    picture = ARTIFACTS / "demo-dashboard.png"
    picture.unlink(missing_ok=True)
    out = subprocess.run(
        [sys.executable, "-m", "tests.harness.demo", "--screenshot", str(picture)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    lines = out.stdout.splitlines()
    outcomes = [line for line in lines if line.startswith("rk3000-") and " -> " in line]
    assert [line.split(" -> ")[1] for line in outcomes] == [
        "joined, Ready in Kubernetes",
        "stopped before keadm join: failing conflicts",
        "joined, Ready in Kubernetes",
        "joined, Ready in Kubernetes",
    ]
    assert "will run chronyc makestep: clock is 600.0 s behind NTP" in out.stdout
    assert (
        'will write /etc/docker/daemon.json: "exec-opts": ["native.cgroupdriver=systemd"]'
        in out.stdout
    )
    assert "  3 Ready edge nodes: rk3000-1, rk3000-3, rk3000-4" in lines
    assert [line for line in lines if line.startswith("  rk3000-") and line.endswith("running")] == [
        "  rk3000-1: running", "  rk3000-3: running", "  rk3000-4: running"]  # fmt: skip
    table = [line.split() for line in lines if line.startswith("rk3000-") and " -> " not in line]
    assert [(row[0], row[1]) for row in table] == [(f"rk3000-{i}", "online") for i in range(1, 5)]
    assert picture.stat().st_size > 10_000  # a picture, not an empty file
    shown = [
        line.removeprefix("  dashboard: ") for line in lines if line.startswith("  dashboard: ")
    ]
    assert shown == [
        "rk3000-1: online", "rk3000-2: online", "rk3000-3: online", "rk3000-4: online",
        "nginx:1.14.2: 3 of 3 Ready edge boards ran it",
        "rk3000-1 running", "rk3000-3 running", "rk3000-4 running",
    ]  # fmt: skip

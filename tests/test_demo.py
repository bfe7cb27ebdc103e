"""`make demo` end to end, as CI sees it (not on a terminal, so it stops by itself): the
four boards' outcomes, the verify job and the fleet table; its dashboard picture is
saved as build/test-artifacts/demo-dashboard.png."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from tests.harness.wait import wait_for

pytestmark = pytest.mark.netns

ARTIFACTS = Path(
    os.environ.get("KEDGE_TEST_ARTIFACTS", Path(__file__).parents[1] / "build" / "test-artifacts")
)


def fleet_rows(lines: list[str]) -> list[list[str]]:
    """The rows of `kedge-cloud-api nodes` (BOARD STATE SEEN K8S …)."""
    rows = [ln.split() for ln in lines if ln.startswith("rk3000-") and " -> " not in ln]
    return [r for r in rows if len(r) > 3 and r[1] in ("online", "stale", "offline", "unknown")]


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
    # Nobody typed on a board: one seed on each boot partition, then the first boot.
    assert [ln for ln in lines if ln.startswith("[rk3000-") and " exit " in ln] == [
        "[rk3000-1] exit 0", "[rk3000-2] exit 1", "[rk3000-3] exit 0", "[rk3000-4] exit 0"]  # fmt: skip
    assert sum("/boot/firmware/kedge-seed.toml scrubbed" in ln for ln in lines) == 4
    timeline = [ln.split()[2] for ln in lines if re.match(r"\[rk3000-4\]   \d\d:\d\d:\d\d ", ln)]
    assert timeline == [
        "seed",
        "network",
        "clock",
        "enrolling",
        "checking",
        "joining",
        "starting",
        "joined",
    ]
    assert any(
        "clock" in ln and "stepped the clock: it was 600.0 s behind NTP" in ln for ln in lines
    )
    # The board that cannot finish stays reachable and says why, in the fleet view.
    assert (
        "                         first boot: fixing (blocked): conflicts: binary /usr/local/bin/k3s;"
        in "\n".join(lines)
    )
    assert any(
        ln.strip().startswith("enrolled 4: rk3000-1, rk3000-2, rk3000-3, rk3000-4") for ln in lines
    )
    # The broker as broker init left it: TLS, no anonymous access, one identity per board.
    assert [ln.split(": ", 1)[1] for ln in lines if ln.startswith("wrote ") and ln.endswith("no board yet")] == [
        "identities kedge-admin and kedge-cloud; no board yet"]  # fmt: skip
    assert any(ln.endswith("(TLS)") and "mosquitto 198.18.0.1:" in ln for ln in lines)
    assert (
        'will write /etc/docker/daemon.json: "exec-opts": ["native.cgroupdriver=systemd"]'
        in out.stdout
    )
    ready = next(
        ln for ln in lines if ln.startswith("  3 Ready edge nodes: ")
    )  # in the order they joined
    assert sorted(ready.split(": ", 1)[1].split(", ")) == ["rk3000-1", "rk3000-3", "rk3000-4"]
    assert [line for line in lines if line.startswith("  rk3000-") and line.endswith("running")] == [
        "  rk3000-1: running", "  rk3000-3: running", "  rk3000-4: running"]  # fmt: skip
    table = fleet_rows(lines)
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


def test_ctrl_c_stops_everything_it_started() -> None:
    namespaces_before = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                       timeout=30, check=True).stdout  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "tests.harness.demo"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True)
    reader.start()
    try:
        # the four boards, the master and the broker are all up once the boards are powered on
        wait_for(lambda: any(ln.startswith("== 2. power on") for ln in lines) or proc.poll() is not None,
                 timeout=300, what="the demo's first board")  # fmt: skip
        work = next(ln.split()[2] for ln in lines if ln.startswith("work directory: "))
        proc.send_signal(signal.SIGINT)
        proc.wait(180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    reader.join(30)
    if proc.stdout is not None:
        proc.stdout.close()
    assert proc.returncode == 130, "".join(lines[-30:])
    assert "".join(lines).count("Traceback") == 0
    left = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
            if any("kedge-demo-" in part for part in p.info["cmdline"] or [])]  # fmt: skip
    assert left == []
    assert work.startswith("/")
    assert not Path(work).exists()
    namespaces_after = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                      timeout=30, check=True).stdout  # fmt: skip
    assert namespaces_after == namespaces_before


def test_four_boards_with_one_seed_join_and_report_with_no_other_input() -> None:
    """issue 16's "done when": the same seed on four fixture boards, powered on together,
    and nothing else: each joined and reporting in the fleet view under its own name."""
    out = subprocess.run(
        [sys.executable, "-m", "tests.harness.demo", "--healthy"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    lines = out.stdout.splitlines()
    assert [ln for ln in lines if ln.startswith("[rk3000-") and " exit " in ln] == [
        f"[rk3000-{i}] exit 0" for i in range(1, 5)]  # fmt: skip
    assert [ln for ln in lines if ln.startswith("[rk3000-") and "firstboot: joined (done)" in ln] == [
        f"[rk3000-{i}] firstboot: joined (done): joined as rk3000-{i} in {ln.split(' in ')[-1]}"
        for i, ln in zip(range(1, 5), [x for x in lines if "firstboot: joined (done)" in x], strict=True)]  # fmt: skip
    assert "  4 Ready edge nodes: " in "\n".join(lines)
    assert [(row[0], row[1], row[4]) for row in fleet_rows(lines)] == [
        (f"rk3000-{i}", "online", "Ready") for i in range(1, 5)]  # fmt: skip
    assert any(ln.strip() == "enrolled 4: rk3000-1, rk3000-2, rk3000-3, rk3000-4" for ln in lines)
    assert "first boot:" not in "\n".join(ln for ln in lines if ln.startswith("   "))  # none stuck

"""Reset never destroys data (issue 26, item 7): a pod's volume mounted below edgecore's
data directory — here a real bind mount of a directory holding someone's data, as an NFS
or CSI volume would be — is unmounted before the directory goes, and when it cannot be
unmounted (in use) the directory is kept, untouched, and reset says why and fails."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import AgentRunner
from tests.harness.board import Board

VOLUME = "/var/lib/kubelet/pods/0f3c/volumes/kubernetes.io~nfs/data"


@pytest.fixture
def mounted(board: Board, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(the volume's own directory, where the pod sees it below the board's data dir)."""
    volume = tmp_path / "nfs-export"
    volume.mkdir()
    (volume / "precious.db").write_text("someone's data\n")
    board.configure({"kubeedge_version": "v1.23.1", "runtime": "containerd",
                     "remote_runtime_endpoint": "unix:///nonexistent/containerd.sock"})  # fmt: skip
    target = board.path(VOLUME)
    target.mkdir(parents=True)
    board.write("/var/lib/kubelet/pods/0f3c/etc-hosts", "127.0.0.1 localhost\n")
    subprocess.run(["mount", "--bind", str(volume), str(target)], check=True, timeout=30)
    try:
        yield volume, target
    finally:
        subprocess.run(["umount", str(target)], check=False, timeout=30, capture_output=True)


def test_reset_unmounts_a_pods_volume_before_removing_the_data_directory(
    board: Board, agent: AgentRunner, mounted: tuple[Path, Path]
) -> None:
    volume, _ = mounted
    run = agent(board, "reset", "--yes", "--json")
    report = json.loads(run.out)
    assert run.rc == 0, report
    done = [(c["action"], c["target"]) for c in report["changes"]]
    assert ("unmount", VOLUME) in done
    assert ("remove", "/var/lib/kubelet") in done
    assert not board.path("/var/lib/kubelet").exists()
    assert (volume / "precious.db").read_text() == "someone's data\n"


def test_reset_keeps_a_directory_whose_volume_stays_mounted_and_says_why(
    board: Board, agent: AgentRunner, mounted: tuple[Path, Path]
) -> None:
    volume, target = mounted
    # A process working in the volume keeps it busy: umount (never forced) refuses.
    user = subprocess.Popen(["sleep", "60"], cwd=target)
    try:
        run = agent(board, "reset", "--yes", "--json")
    finally:
        user.kill()
        user.wait(10)
    report = json.loads(run.out)
    assert run.rc == 1, report
    assert report["ok"] is False
    assert report["summary"].startswith("reset stopped short: kept /var/lib/kubelet: still mounted")
    assert f"{VOLUME} (Device or resource busy)" in report["summary"]
    assert (volume / "precious.db").read_text() == "someone's data\n"
    assert board.path("/var/lib/kubelet/pods/0f3c/etc-hosts").exists()  # not walked into

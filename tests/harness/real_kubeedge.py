"""One real KubeEdge release end to end in a sandbox: the control plane with the
release's resources, its cloudcore, and one edge board not yet joined."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.harness.control_plane import Cloudcore, ControlPlane
from tests.harness.real_edge import RealEdge
from tests.harness.sandbox import ADDRESS, Sandbox, sandbox

HUB = f"{ADDRESS}:10000"  # cloudhub, as a board is told it


@dataclass
class RealKubeEdge:
    box: Sandbox
    plane: ControlPlane
    cloudcore: Cloudcore
    edge: RealEdge


@contextmanager
def real_kubeedge(
    work: Path, version: str, *, node_lifecycle: bool = False
) -> Iterator[RealKubeEdge]:
    """`node_lifecycle`: run the controller that marks a silent Node Unknown."""
    with sandbox(work / "box") as box:
        plane = ControlPlane(box, work / "plane").start(node_lifecycle=node_lifecycle)
        plane.install_kubeedge_resources(version)
        cloudcore = Cloudcore(box, plane, version, work / "cloudcore").start()
        edge = RealEdge(box, work / "edge", version).start()
        yield RealKubeEdge(box, plane, cloudcore, edge)

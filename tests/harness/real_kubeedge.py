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
class RealCloud:
    box: Sandbox
    plane: ControlPlane
    cloudcore: Cloudcore


@dataclass
class RealKubeEdge(RealCloud):
    edge: RealEdge


@contextmanager
def real_cloud(
    work: Path, version: str, *, node_lifecycle: bool = False, workloads: bool = False
) -> Iterator[RealCloud]:
    """The control plane and cloudcore of `version`, no board (the controllers to run:
    ControlPlane.start)."""
    with sandbox(work / "box") as box:
        plane = ControlPlane(box, work / "plane").start(
            node_lifecycle=node_lifecycle, workloads=workloads
        )
        plane.install_kubeedge_resources(version)
        cloudcore = Cloudcore(box, plane, version, work / "cloudcore").start()
        yield RealCloud(box, plane, cloudcore)


@contextmanager
def real_kubeedge(
    work: Path, version: str, *, node_lifecycle: bool = False, workloads: bool = False
) -> Iterator[RealKubeEdge]:
    """real_cloud and one board in its sandbox, without systemd (tests/harness/real_edge.py)."""
    with real_cloud(work, version, node_lifecycle=node_lifecycle, workloads=workloads) as cloud:
        edge = RealEdge(cloud.box, work / "edge", version).start()
        yield RealKubeEdge(cloud.box, cloud.plane, cloud.cloudcore, edge)

"""What checks find out that other code acts on, as typed values.

A check's `details` are for people and JSON; join, fix and the daemon read these
instead, so renaming a detail can never silently change what they do. A check sets
its facts on the run's context (`ctx.facts.clock = ClockFacts(...)`); one that did not
run, or could not tell, leaves None.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from agent.containerd_config import ContainerdConfig


@dataclass(frozen=True)
class ClockFacts:
    offset_s: float | None  # how far the board is behind (+) or ahead (-) of `source`
    source: str | None  # "NTP <server>", "cloud API"
    cert_not_before: datetime | None  # cloudcore's certificate, when the board is before it


@dataclass(frozen=True)
class CgroupFacts:
    docker_driver: str  # what the runtime uses (docker's, or containerd's runc)
    join_driver: str  # what `keadm join --cgroupdriver` must say
    memory_cgroup: bool | None  # None: nothing on the board tells


@dataclass(frozen=True)
class ImageFacts:
    wanted: tuple[str, ...]
    missing: tuple[str, ...]
    # (pulled name, name edgecore asks for) when the second is still missing
    untagged_sandbox: tuple[str, str] | None = None


@dataclass(frozen=True)
class RuntimeFacts:
    """The CRI runtime join and edgecore will use (not set with docker)."""

    endpoint: str
    name: str  # "containerd", "cri-dockerd", …
    version: str
    network_ready: bool | None
    network_message: str
    sandbox_image: str | None  # the runtime's pod sandbox image (containerd's config)
    config: ContainerdConfig | None = None  # containerd's, when read


@dataclass
class Facts:
    clock: ClockFacts | None = None
    cgroup: CgroupFacts | None = None
    images: ImageFacts | None = None
    runtime: RuntimeFacts | None = None

"""The preflight checks. Importing this package registers them, in report order."""

from agent.checks import board, clock, cloudcore, conflicts, docker, images, platform, runtime
from agent.checks.registry import REGISTRY, Check, Outcome

ORDER = (
    "arch",
    "keadm",
    "kubeedge-version",
    "join-tools",
    "conflicts",
    "clock",
    "docker",
    "cgroup-driver",
    "images",
    "cri",
    "runtime-cgroup",
    "sandbox-image",
    "runtime-images",
    "cni",
    "cloudcore",
    "leftovers",
    "resources",
    "kmsg",
    "node-name",
    "ports",
    "pod-dns",
    "edgecore",
)
assert set(ORDER) == set(REGISTRY), "every check is listed in ORDER exactly once"
CHECKS: dict[str, Check] = {cid: REGISTRY[cid] for cid in ORDER}

__all__ = [
    "CHECKS",
    "ORDER",
    "Check",
    "Outcome",
    "board",
    "clock",
    "cloudcore",
    "conflicts",
    "docker",
    "images",
    "platform",
    "runtime",
]

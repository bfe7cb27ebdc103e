"""Deciding keadm init's flags before running it (pure functions, no cluster needed)."""

from __future__ import annotations

import pytest

from cloud_api.cloudcore_plan import (
    Interface,
    PlanError,
    check_advertise,
    check_k8s,
    check_keadm_arch,
    check_release,
    init_argv,
    tolerations_needed,
)
from cloud_api.kube import Node, Taint

HOST = [
    Interface("lo", "127.0.0.1"),
    Interface("ens33", "192.168.106.128"),
    Interface("ens37", "192.168.31.137"),
]
MASTER_TAINTS = (
    Taint("node-role.kubernetes.io/control-plane", "NoSchedule"),
    Taint("node-role.kubernetes.io/master", "NoSchedule"),
)
MASTER = Node("master", ("192.168.31.137",), MASTER_TAINTS, edge=False)


def test_advertise_address_names_its_interface() -> None:
    assert check_advertise(["192.168.31.137"], HOST) == {"192.168.31.137": "ens37"}


@pytest.mark.parametrize(("address", "reason"), [
    ("127.0.0.1", "is loopback"), ("10.0.0.9", "is not on any interface of this host"),
    ("cloud.example", "is not an IP address"),
])  # fmt: skip
def test_unusable_advertise_addresses(address: str, reason: str) -> None:
    with pytest.raises(PlanError, match=reason) as err:
        check_advertise([address], HOST)
    if "interface" in reason:
        assert err.value.details["host_addresses"] == ["192.168.106.128", "192.168.31.137"]


def test_kubernetes_range() -> None:
    check_k8s("v1.13.0", (1, 23), allow_unsupported=False)
    with pytest.raises(
        PlanError,
        match=r"Kubernetes 1.24 is outside KubeEdge v1.13.0's supported range 1.20 to 1.23",
    ):
        check_k8s("v1.13.0", (1, 24), allow_unsupported=False)
    check_k8s("v1.13.0", (1, 24), allow_unsupported=True)


def test_keadm_architecture() -> None:
    check_keadm_arch(0x3E, "x86_64")
    check_keadm_arch(None, "x86_64")
    with pytest.raises(PlanError, match="keadm is built for arm64 but this host is amd64"):
        check_keadm_arch(0xB7, "x86_64")


def test_tolerations_only_for_a_tainted_single_master() -> None:
    assert [t["key"] for t in tolerations_needed([MASTER])] == [
        "node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"]  # fmt: skip
    worker = Node("worker", ("192.168.31.140",), (), edge=False)
    assert tolerations_needed([MASTER, worker]) == []
    edge = Node("rk3000-1", ("192.168.31.150",), (), edge=True)
    assert len(tolerations_needed([MASTER, edge])) == 2  # edge nodes never take cloudcore


def test_init_argv_uses_profile_and_one_key_per_set() -> None:
    argv = init_argv(
        ["192.168.31.137"], "/root/.kube/config", "v1.13.0", tolerations_needed([MASTER])
    )
    assert argv[:6] == ["keadm", "init", "--advertise-address=192.168.31.137", "--kube-config=/root/.kube/config",
                        "--profile", "version=v1.13.0"]  # fmt: skip
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    assert sets[0] == "cloudCore.tolerations[0].key=node-role.kubernetes.io/control-plane"
    assert all(s.count("=") == 1 and "," not in s for s in sets)
    assert "--kubeedge-version" not in " ".join(argv)


def test_init_argv_names_later_releases_with_kubeedge_version() -> None:
    argv = init_argv(["192.168.31.137"], "/root/.kube/config", "v1.23.1", [])
    assert argv == ["keadm", "init", "--advertise-address=192.168.31.137",
                    "--kube-config=/root/.kube/config", "--kubeedge-version=v1.23.1"]  # fmt: skip


@pytest.mark.parametrize("target", ["v1.21.1", "v1.22.0", "v1.23.0"])
def test_init_never_installs_a_release_with_a_security_advisory(target: str) -> None:
    with pytest.raises(PlanError, match=r"CVE-2026-62371 and CVE-2026-62182.*which fixes them"):
        check_release(target)

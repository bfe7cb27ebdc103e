"""The per-release facts (kedge/kubeedge.py `Release`, docs/kubeedge-versions.md) and the
`keadm join` flags kedge builds from them for each release and runtime."""

from __future__ import annotations

from typing import Any

import pytest

from agent.join import keadm_join_argv
from agent.settings import AgentSettings
from kedge.kubeedge import Release, hub_cycle_s
from tests.kubeedge_sim import keadm_cri


@pytest.mark.parametrize(
    ("tag", "runtimetype", "with_mqtt", "data_dir", "node_check", "reset_edge"),
    [
        ("v1.13.0", True, True, "/var/lib/edged", False, False),
        ("v1.15.4", True, True, "/var/lib/edged", False, False),
        ("v1.16.0", False, True, "/var/lib/edged", False, False),
        ("v1.17.0", False, True, "/var/lib/edged", False, True),
        ("v1.19.2", False, True, "/var/lib/edged", False, True),
        ("v1.20.0", False, True, "/var/lib/kubelet", True, True),
        ("v1.21.0", False, False, "/var/lib/kubelet", True, True),
        ("v1.23.1", False, False, "/var/lib/kubelet", True, True),
    ],
)
def test_what_changes_release_by_release(
    tag: str, runtimetype: bool, with_mqtt: bool, data_dir: str, node_check: bool, reset_edge: bool
) -> None:
    r = Release(tag)
    assert (r.runtimetype_flag, r.with_mqtt_flag, r.data_dir, r.checks_node_exists,
            r.has_reset_edge) == (runtimetype, with_mqtt, data_dir, node_check, reset_edge)  # fmt: skip


def test_the_images_each_release_pulls() -> None:
    assert Release("v1.13.0").join_images() == [
        "kubeedge/installation-package:v1.13.0", "eclipse-mosquitto:1.6.15", "kubeedge/pause:3.6"]  # fmt: skip
    # v1.14 pulls all three whatever --with-mqtt says; v1.15 only asks for mosquitto with it
    assert len(Release("v1.14.2").join_images(with_mqtt=False)) == 3
    assert Release("v1.15.1").join_images(with_mqtt=False) == [
        "kubeedge/installation-package:v1.15.1", "kubeedge/pause:3.6"]  # fmt: skip
    assert Release("v1.23.1").join_images(repository="mirror.local/kubeedge") == [
        "mirror.local/kubeedge/installation-package:v1.23.1"]  # fmt: skip


def test_supported_maintained_and_advised() -> None:
    assert not Release("v1.12.7").supported
    assert not Release("v1.24.0").supported
    assert Release("v1.13.0").supported and not Release("v1.13.0").maintained  # noqa: PT018
    assert Release("v1.21.0").maintained
    better, why = Release("v1.23.0").advisory() or ("", "")
    assert better == "v1.23.1"
    assert "NodeUpgradeJob" in why


@pytest.mark.parametrize(
    ("tag", "fixed"),
    [("v1.21.0", "v1.21.2"), ("v1.21.1", "v1.21.2"), ("v1.22.0", "v1.22.2"),
     ("v1.22.1", "v1.22.2"), ("v1.23.0", "v1.23.1"), ("v1.21.2", None), ("v1.22.2", None),
     ("v1.23.1", None), ("v1.20.0", None)],
)  # fmt: skip
def test_the_security_releases_are_named_with_their_fix(tag: str, fixed: str | None) -> None:
    """CVE-2026-62371 and CVE-2026-62182 (NodeUpgradeJob, ConfigUpdateJob): v1.21.0-1.21.1,
    v1.22.0-1.22.1 and v1.23.0; fixed in v1.21.2, v1.22.2, v1.23.1."""
    from kedge.kubeedge import refuse_advised

    advisory = Release(tag).advisory()
    assert (advisory[0] if advisory else None) == fixed
    said = refuse_advised(tag)
    if fixed is None:
        assert said is None
    else:
        assert said is not None
        assert "CVE-2026-62371 and CVE-2026-62182" in said
        assert f"use {fixed}, which fixes them" in said


def argv(**settings: Any) -> list[str]:
    s = AgentSettings.model_validate({"cloudcore": "192.0.2.1:10000", **settings})
    return keadm_join_argv(s, node="rk3000-1", token="t", docker_driver="systemd")


def test_join_flags_follow_the_release_and_the_runtime() -> None:
    old = argv(kubeedge_version="v1.15.1", runtime="containerd")
    assert "--runtimetype=remote" in old
    new = argv(kubeedge_version="v1.23.1", runtime="containerd")
    assert not [a for a in new if a.startswith("--runtimetype")]  # "unknown flag" from v1.16
    assert "--remote-runtime-endpoint=unix:///run/containerd/containerd.sock" in new
    shim = argv(kubeedge_version="v1.23.1", runtime="cri-dockerd")
    assert "--remote-runtime-endpoint=unix:///var/run/cri-dockerd.sock" in shim
    moved = argv(kubeedge_version="v1.23.1", runtime="containerd",
                 remote_runtime_endpoint="unix:///srv/containerd.sock")  # fmt: skip
    assert "--remote-runtime-endpoint=unix:///srv/containerd.sock" in moved
    docker = argv()
    flags = [a for a in docker if a.startswith(("--runtimetype", "--remote-runtime"))]
    assert flags == [
        "--runtimetype=docker",
        "--remote-runtime-endpoint=unix:///var/run/dockershim.sock",
    ]


def test_reset_removes_the_target_releases_data_directory() -> None:
    from agent.reset import KUBEEDGE_DIRS, kubeedge_dirs

    assert kubeedge_dirs("v1.13.0") == KUBEEDGE_DIRS
    assert kubeedge_dirs("v1.19.2") == KUBEEDGE_DIRS  # /var/lib/edged is in it already
    assert kubeedge_dirs("v1.23.1") == (*KUBEEDGE_DIRS, "/var/lib/kubelet")


@pytest.mark.parametrize(
    ("current", "target", "cloud", "refusal"),
    [
        ("v1.22.0", "v1.23.1", "v1.23.1", None),
        ("v1.23.0", "v1.23.1", "v1.23.1", None),  # a patch release: the advisory's way out
        ("v1.23.1", "v1.23.1", "v1.23.1", None),  # nothing to do
        ("v1.22.0", "v1.23.1", "v1.22.0", "cloudcore runs v1.22.0, older than v1.23.1"),
        ("v1.21.0", "v1.23.1", "v1.23.1", "upgrade to the newest v1.22.x first"),
        ("v1.23.1", "v1.22.2", "v1.23.1", "that is a rollback (keadm rollback edge)"),
        ("v1.13.0", "v1.14.0", "v1.14.0", "cannot be upgraded in place"),
        ("v1.22.2", "v1.23.0", "v1.23.1", "KubeEdge v1.23.0 has known security holes"),
        ("v1.21.2", "v1.22.1", "v1.23.1", "use v1.22.2, which fixes them"),
    ],
)
def test_the_upgrade_plan_follows_kubeedges_rules(
    current: str, target: str, cloud: str, refusal: str | None
) -> None:
    from agent.upgrade import plan

    said = plan(current, target, cloud)
    assert (said is None) if refusal is None else (said is not None and refusal in said), said


def test_node_ip_reaches_keadm_from_v1_18_and_is_refused_before() -> None:
    """Issue 26, item 5 (5): from v1.20 edgecore takes the default route's address as the
    Node's InternalIP; a multi-homed board names its own with node_ip (keadm join --set,
    edge/join_others.go@v1.18.0 on)."""
    from kedge.errors import UserError

    got = argv(kubeedge_version="v1.23.1", runtime="containerd", node_ip="192.168.10.7")
    assert got[-1] == "--set=modules.edged.nodeIP=192.168.10.7"
    assert not any(
        a.startswith("--set") for a in argv(kubeedge_version="v1.23.1", runtime="containerd")
    )
    with pytest.raises(UserError, match=r"node_ip needs KubeEdge v1\.18 or later"):
        argv(kubeedge_version="v1.13.0", node_ip="192.168.10.7")
    with pytest.raises(ValueError, match="node_ip"):
        argv(kubeedge_version="v1.23.1", runtime="containerd", node_ip="192.168.10.300")


@pytest.mark.parametrize(
    ("written", "cycle"),
    [
        (keadm_cri.EDGECORE_YAML, 55.0),  # keadm's heartbeat: 15 → 5 tries 5 s apart + 30 s
        (keadm_cri.EDGECORE_YAML.replace("heartbeat: 15", "heartbeat: 60"), 145.0),
        (None, 55.0),  # no edgecore.yaml: edgecore's default
    ],
)
def test_kedge_waits_one_edgehub_cycle_for_the_cloudhub_connection(
    written: str | None, cycle: float
) -> None:
    assert hub_cycle_s(written) == cycle

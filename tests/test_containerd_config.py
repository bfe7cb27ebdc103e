"""containerd's config.toml in its three layouts: read, and mended without losing a line."""

from __future__ import annotations

import pytest

from agent import containerd_config as cc

V1_CONTAINERD_IO = """\
#   Copyright 2018-2022 Docker Inc.
disabled_plugins = ["cri"]

#root = "/var/lib/containerd"
"""

V2_DEFAULT = """\
version = 2
root = "/var/lib/containerd"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.6"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = ""
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
"""

V3_DEFAULT = """\
version = 3
root = '/var/lib/containerd'

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = 'registry.k8s.io/pause:3.10'

  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
    runtime_type = 'io.containerd.runc.v2'

    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
      BinaryName = ''
"""


def test_the_three_layouts_are_read() -> None:
    assert cc.parse(V1_CONTAINERD_IO) == cc.ContainerdConfig(1, False, None, True)
    assert cc.parse(V2_DEFAULT) == cc.ContainerdConfig(2, False, "registry.k8s.io/pause:3.6", False)
    assert cc.parse(V3_DEFAULT) == cc.ContainerdConfig(
        3, False, "registry.k8s.io/pause:3.10", False
    )


@pytest.mark.parametrize("text", [V2_DEFAULT, V3_DEFAULT, "version = 2\n"])
def test_systemd_cgroup_is_set_where_the_layout_reads_it_and_nothing_else_moves(text: str) -> None:
    on = cc.with_systemd_cgroup(text, True)
    assert cc.parse(on).systemd_cgroup is True
    assert cc.parse(cc.with_systemd_cgroup(on, False)).systemd_cgroup is False
    kept = [ln for ln in text.splitlines() if "SystemdCgroup" not in ln]
    assert [ln for ln in on.splitlines() if "SystemdCgroup" not in ln][: len(kept)] == kept
    assert cc.with_systemd_cgroup(on, True) == on  # idempotent


def test_the_cri_plugin_is_enabled_keeping_the_rest_of_the_list() -> None:
    text = 'disabled_plugins = ["io.containerd.internal.v1.opt", "cri"]  # docker\n'
    mended = cc.with_cri_enabled(text)
    assert mended == 'disabled_plugins = ["io.containerd.internal.v1.opt"]  # docker\n'
    assert not cc.parse(mended).cri_disabled
    assert cc.with_cri_enabled(mended) == mended


def test_a_broken_file_is_named() -> None:
    with pytest.raises(cc.ConfigUnreadable, match=r"/etc/containerd/config.toml: .*line 1"):
        cc.parse("version = = 2\n")


def test_the_cni_directories_are_read_where_containerd_reads_them() -> None:
    """Found running Debian's containerd (tests/real/): a bin_dir other than /opt/cni/bin."""
    v2 = cc.parse(
        'version = 2\n[plugins."io.containerd.grpc.v1.cri".cni]\n'
        'bin_dir = "/usr/lib/cni"\nconf_dir = "/etc/cni/conf"\n'
    )
    assert (v2.cni_bin_dir, v2.cni_conf_dir) == ("/usr/lib/cni", "/etc/cni/conf")
    v3 = cc.parse(
        "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.cni]\nbin_dirs = [\"/usr/lib/cni\"]\n"
    )
    assert (v3.cni_bin_dir, v3.cni_conf_dir) == ("/usr/lib/cni", None)
    assert cc.parse("version = 2\n").cni_bin_dir is None

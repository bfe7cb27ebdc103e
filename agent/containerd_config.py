"""containerd's /etc/containerd/config.toml as kedge reads and mends it: the cgroup
driver of runc (`SystemdCgroup`), the CRI plugin's sandbox image, and whether the CRI
plugin is disabled. Three layouts are met on boards:

- containerd 2.x, `version = 3`: `[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]`,
  the sandbox image under `[plugins.'io.containerd.cri.v1.images'.pinned_images] sandbox`;
- containerd 1.x, `version = 2`: `[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]`
  and `sandbox_image` in `[plugins."io.containerd.grpc.v1.cri"]`;
- no version line (version 1, what Docker's containerd.io package ships): plugin names
  as in version 2 once the CRI plugin is enabled; `disabled_plugins = ["cri"]` turns it off.

Edits are made on the text, line by line, so every other setting and comment stays.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from typing import Any

PATH = "/etc/containerd/config.toml"
CRI_V2 = "io.containerd.grpc.v1.cri"
RUNTIME_V3, IMAGES_V3 = "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images"
# `containerd config default` of the release: its sandbox image when the file names none.
DEFAULT_SANDBOX = {(1, 6): "registry.k8s.io/pause:3.6", (1, 7): "registry.k8s.io/pause:3.8",
                   (2, 0): "registry.k8s.io/pause:3.10", (2, 1): "registry.k8s.io/pause:3.10"}  # fmt: skip


class ConfigUnreadable(ValueError):
    """The file is not TOML containerd could read (the message says where)."""


@dataclass(frozen=True)
class ContainerdConfig:
    version: int
    systemd_cgroup: bool  # containerd's default is false
    sandbox_image: str | None  # None: the release's default
    cri_disabled: bool
    # Where its CRI plugin finds the CNI config and plugins (None: /etc/cni/net.d and
    # /opt/cni/bin, containerd's defaults; Debian's plugins are in /usr/lib/cni).
    cni_conf_dir: str | None = None
    cni_bin_dir: str | None = None


def _table(data: dict[str, Any], *path: str) -> dict[str, Any]:
    for key in path:
        value = data.get(key)
        if not isinstance(value, dict):
            return {}
        data = value
    return data


def runc_options_path(version: int) -> tuple[str, ...]:
    plugin = RUNTIME_V3 if version >= 3 else CRI_V2
    return ("plugins", plugin, "containerd", "runtimes", "runc", "options")


def parse(text: str) -> ContainerdConfig:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigUnreadable(f"{PATH}: {exc}") from None
    version = int(data.get("version", 1)) if str(data.get("version", 1)).isdigit() else 1
    options = _table(data, *runc_options_path(version))
    if version >= 3:
        sandbox = _table(data, "plugins", IMAGES_V3, "pinned_images").get("sandbox")
    else:
        sandbox = _table(data, "plugins", CRI_V2).get("sandbox_image")
    disabled = data.get("disabled_plugins") or []
    cni = _table(data, "plugins", RUNTIME_V3 if version >= 3 else CRI_V2, "cni")
    # containerd 2.1 takes a list (bin_dirs); earlier releases one directory (bin_dir).
    bins = cni.get("bin_dirs")
    bin_dir = (
        bins[0]
        if isinstance(bins, list) and bins and isinstance(bins[0], str)
        else cni.get("bin_dir")
    )
    conf_dir = cni.get("conf_dir")
    return ContainerdConfig(
        version=version,
        systemd_cgroup=options.get("SystemdCgroup") is True,
        sandbox_image=sandbox if isinstance(sandbox, str) else None,
        cri_disabled=any(p in ("cri", CRI_V2, RUNTIME_V3) for p in disabled if isinstance(p, str)),
        cni_conf_dir=conf_dir if isinstance(conf_dir, str) else None,
        cni_bin_dir=bin_dir if isinstance(bin_dir, str) else None,
    )


def _header(version: int) -> str:
    if version >= 3:
        return f"[plugins.'{RUNTIME_V3}'.containerd.runtimes.runc.options]"
    return f'[plugins."{CRI_V2}".containerd.runtimes.runc.options]'


def _same_header(line: str, wanted: str) -> bool:
    """Table headers compared without quotes and spaces ("…" and '…' both occur)."""

    def norm(s: str) -> str:
        return re.sub(r"[\s'\"]", "", s)

    return norm(line.split("#", 1)[0]) == norm(wanted)


def with_systemd_cgroup(text: str, value: bool) -> str:
    """`text` with runc's SystemdCgroup set to `value`, everything else as it was."""
    config = parse(text)
    header = _header(config.version)
    setting = f"SystemdCgroup = {'true' if value else 'false'}"
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if _same_header(ln.strip(), header)), None)
    if start is None:
        tail = "" if text.endswith("\n") or not text else "\n"
        return f"{text}{tail}\n{header}\n  {setting}\n"
    end = next(
        (i for i in range(start + 1, len(lines)) if lines[i].lstrip().startswith("[")), len(lines)
    )
    for i in range(start + 1, end):
        if re.match(r"\s*SystemdCgroup\s*=", lines[i]):
            indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            lines[i] = indent + setting
            break
    else:
        lines.insert(start + 1, "  " + setting)
    return "\n".join(lines) + "\n"


def with_cri_enabled(text: str) -> str:
    """`text` without the CRI plugin in disabled_plugins (the rest of the list kept)."""
    config = parse(text)
    if not config.cri_disabled:
        return text
    out = []
    for line in text.splitlines():
        found = re.match(r"(\s*disabled_plugins\s*=\s*)\[(.*)\](.*)$", line)
        if found:
            names = [n.strip() for n in found[2].split(",") if n.strip()]
            kept = [n for n in names if n.strip("'\"") not in ("cri", CRI_V2, RUNTIME_V3)]
            line = f"{found[1]}[{', '.join(kept)}]{found[3]}"
        out.append(line)
    return "\n".join(out) + "\n"


def default_sandbox(runtime_version: str) -> str | None:
    m = re.match(r"v?(\d+)\.(\d+)", runtime_version)
    return DEFAULT_SANDBOX.get((int(m[1]), int(m[2]))) if m else None

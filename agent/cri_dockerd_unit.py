"""cri-dockerd's pod sandbox image, from the flags its systemd unit starts it with.

cri-dockerd keeps no config file: its pause image is the --pod-infra-container-image flag,
whose default follows the release (Mirantis/cri-dockerd, cmd/cri/options/options.go,
defaultPodSandboxImageName/Version): registry.k8s.io/pause:3.10 from v0.3.17,
registry.k8s.io/pause:3.9 for v0.3.12 to v0.3.16 — so the version is read
(`cri-dockerd --version`). The reference install's unit (packaging/systemd/
cri-docker.service) and most guides set the flag on ExecStart.
"""

from __future__ import annotations

import re
import shlex

from kedge.errors import CommandError
from kedge.host import Host
from kedge.names import version_tuple

DEFAULT_SANDBOX = "registry.k8s.io/pause:3.10"  # v0.3.17 on, and when the version is unknown
OLDER_SANDBOX = "registry.k8s.io/pause:3.9"  # up to v0.3.16
_VERSION = re.compile(r"cri-dockerd v?(\d+\.\d+\.\d+)")
UNITS = (
    "/etc/systemd/system/cri-docker.service.d/override.conf",
    "/etc/systemd/system/cri-docker.service",
    "/lib/systemd/system/cri-docker.service",
    "/usr/lib/systemd/system/cri-docker.service",
)
_FLAG = "--pod-infra-container-image"


async def default_sandbox(host: Host) -> str:
    """The release's default pause image, from `cri-dockerd --version`."""
    if host.which("cri-dockerd") is None:
        return DEFAULT_SANDBOX
    try:
        done = await host.run(["cri-dockerd", "--version"], timeout=5)
    except CommandError:
        return DEFAULT_SANDBOX
    found = _VERSION.search(done.stdout + done.stderr)
    if found is None:
        return DEFAULT_SANDBOX
    return DEFAULT_SANDBOX if version_tuple("v" + found[1]) >= (0, 3, 17) else OLDER_SANDBOX


def sandbox_image(host: Host, default: str = DEFAULT_SANDBOX) -> str:
    """The pause image of the first unit (drop-in first) whose ExecStart sets the flag,
    else `default` (default_sandbox())."""
    for unit in UNITS:
        for line in (host.read_text(unit) or "").splitlines():
            if not re.match(r"\s*ExecStart\s*=\s*\S", line):
                continue
            try:
                words = shlex.split(line.split("=", 1)[1])
            except ValueError:
                continue
            for i, word in enumerate(words):
                if word.startswith(_FLAG + "="):
                    return word.split("=", 1)[1]
                if word == _FLAG and i + 1 < len(words):
                    return words[i + 1]
    return default

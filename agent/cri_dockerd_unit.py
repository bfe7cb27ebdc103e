"""cri-dockerd's pod sandbox image, from the flags its systemd unit starts it with.

cri-dockerd keeps no config file: its pause image is the --pod-infra-container-image flag,
default registry.k8s.io/pause:3.9 (Mirantis/cri-dockerd, cmd/cri/options/options.go,
defaultPodSandboxImageName/Version). The reference install's unit (packaging/systemd/
cri-docker.service) and most guides set it on ExecStart.
"""

from __future__ import annotations

import re
import shlex

from kedge.host import Host

DEFAULT_SANDBOX = "registry.k8s.io/pause:3.9"
UNITS = (
    "/etc/systemd/system/cri-docker.service.d/override.conf",
    "/etc/systemd/system/cri-docker.service",
    "/lib/systemd/system/cri-docker.service",
    "/usr/lib/systemd/system/cri-docker.service",
)
_FLAG = "--pod-infra-container-image"


def sandbox_image(host: Host) -> str:
    """The pause image of the first unit (drop-in first) whose ExecStart sets the flag."""
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
    return DEFAULT_SANDBOX

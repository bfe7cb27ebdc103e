"""arch, keadm, kubeedge-version: is this the right tool for this board?"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from agent.checks.context import CheckContext
from agent.checks.registry import Outcome, check, failed, passed, warned
from kedge.elf import elf_machine
from kedge.errors import CommandError
from kedge.host import Host
from kedge.kubeedge import (
    ARCH_BY_ELF_MACHINE,
    ARCH_BY_MACHINE,
    DOCKERSHIM_ENDPOINT,
    ELF_MACHINE_NAMES,
    MAINTAINED_FROM,
    NEWEST_TAG,
    Release,
    install_keadm_remedy,
    supports_docker,
)

_GIT_VERSION = re.compile(r'GitVersion:"(v[^"]+)"')


def board_arch(ctx: CheckContext) -> str | None:
    return ARCH_BY_MACHINE.get(ctx.host.machine())


@check(
    "arch",
    "Board architecture",
    "The CPU architecture is one KubeEdge ships for, and keadm matches it.",
)
async def arch(ctx: CheckContext) -> Outcome:
    machine = ctx.host.machine()
    kube_arch = board_arch(ctx)
    if kube_arch is None:
        return failed(
            f"{machine} is not an architecture KubeEdge ships binaries for",
            "KubeEdge releases keadm and edgecore for amd64 (x86_64), arm64 (aarch64) and arm "
            "(armv7l) only. On an ARMv8 board, install a 64-bit (arm64) OS image.",
            machine=machine,
        )
    details: dict[str, object] = {"machine": machine, "kubeedge_arch": kube_arch}
    keadm = ctx.host.which("keadm")
    if keadm is None:
        return passed(f"{machine} (KubeEdge arch {kube_arch})", **details)
    code = elf_machine(ctx.host.path(keadm))
    details["keadm"] = keadm
    if code is None:
        details["keadm_elf"] = None
        return passed(
            f"{machine} (KubeEdge arch {kube_arch}); {keadm} is not an ELF binary", **details
        )
    details["keadm_elf"] = ELF_MACHINE_NAMES.get(code, hex(code))
    keadm_arch = ARCH_BY_ELF_MACHINE.get(code)
    if keadm_arch != kube_arch:
        return failed(
            f"board is {kube_arch} ({machine}) but {keadm} is built for "
            f"{keadm_arch or details['keadm_elf']}",
            install_keadm_remedy(ctx.settings.kubeedge_version, kube_arch),
            **details,
        )
    return passed(f"{machine} (KubeEdge arch {kube_arch}); keadm matches", **details)


@check("keadm", "keadm binary", "keadm is installed, runs, and is the target KubeEdge version.")
async def keadm(ctx: CheckContext) -> Outcome:
    target = ctx.settings.kubeedge_version
    arch_name = board_arch(ctx) or "amd64"
    path = ctx.host.which("keadm")
    if path is None:
        return failed(
            "keadm not found on PATH",
            install_keadm_remedy(target, arch_name),
            expected=target,
            searched=list(ctx.host.search_path),
        )
    try:
        result = await ctx.host.run(["keadm", "version"], timeout=5)
    except CommandError as exc:
        return failed(
            f"{path} does not run: {exc}", install_keadm_remedy(target, arch_name), path=path
        )
    found = _GIT_VERSION.search(result.stdout)
    if not result.ok or found is None:
        last = (result.stderr.strip() or result.stdout.strip()).splitlines()[-1:] or [""]
        return failed(
            f"`keadm version` exited {result.returncode} without a version: {last[0]}",
            install_keadm_remedy(target, arch_name),
            path=path,
        )
    version = found[1]
    if version != target:
        return failed(
            f"keadm is {version}, the target KubeEdge version is {target}",
            install_keadm_remedy(target, arch_name)
            + f'\nor target keadm\'s version: set kubeedge_version = "{version}".',
            path=path,
            version=version,
            expected=target,
        )
    return passed(f"{path} {version}", path=path, version=version, expected=target)


@check(
    "kubeedge-version",
    "KubeEdge version and runtime",
    "The target KubeEdge version can drive the configured container runtime.",
)
async def kubeedge_version(ctx: CheckContext) -> Outcome:
    s = ctx.settings
    details = {"kubeedge_version": s.kubeedge_version, "runtime": s.runtime}
    if s.runtime == "docker":
        if not supports_docker(s.kubeedge_version):
            return failed(
                f"KubeEdge {s.kubeedge_version} cannot use docker: dockershim was removed in v1.14",
                'Either set kubeedge_version = "v1.13.0" (the last release that drives docker), '
                'or install cri-dockerd (or containerd) and set runtime = "remote" with '
                'remote_runtime_endpoint = "unix:///var/run/cri-dockerd.sock".',
                **details,
            )
        return _advised(s.kubeedge_version, f"{s.kubeedge_version} with docker (join will use "
                        f"--remote-runtime-endpoint={DOCKERSHIM_ENDPOINT})", details)  # fmt: skip
    endpoint = s.runtime_endpoint
    details["remote_runtime_endpoint"] = endpoint
    sock = endpoint.removeprefix("unix://")
    # A socket setting names a path on this machine, as docker_host does: what the CRI
    # client dials (kedge.cri), not a file below the board's root.
    if not await asyncio.to_thread(Path(sock).exists):
        # keadm's first act with a remote runtime is to ask the CRI for its image API
        # (vendor/k8s.io/kubernetes/pkg/kubelet/cri/remote/remote_image.go@v1.13.0):
        # "unable to determine image API version", before it pulls anything.
        return failed(
            f"runtime remote, but {sock} does not exist: keadm join would stop at once "
            '("unable to determine image API version")',
            "Install and start the CRI runtime (containerd with its CRI plugin, or cri-dockerd), "
            "or set remote_runtime_endpoint to the socket it serves.",
            **details,
        )
    return _advised(
        s.kubeedge_version, f"{s.kubeedge_version} with CRI runtime at {endpoint}", details
    )


def _advised(tag: str, summary: str, details: dict[str, Any]) -> Outcome:
    """Pass, unless the release must not be used (security fixes missing: kedge does not
    join it) or is no longer maintained (a warning with the way up)."""
    release = Release(tag)
    advisory = release.advisory()
    if advisory is not None:
        better, why = advisory
        return failed(f"{summary}; but kedge never installs {tag}: {why} (fixed in {better})",
                      f'Set kubeedge_version = "{better}" (on the cloud side too: '
                      f"kedge-cloud-api init --kubeedge-version {better}).", **details)  # fmt: skip
    if not release.maintained:
        return warned(
            f"{summary}; but KubeEdge {tag} no longer gets fixes (the project maintains its "
            f"three newest minor releases, v1.{MAINTAINED_FROM[1]} and later)",
            f"Plan the upgrade to {NEWEST_TAG}: the cloud first (kedge-cloud-api init "
            f"--kubeedge-version {NEWEST_TAG}), then each board; from v1.14 on, boards run "
            'containerd or cri-dockerd instead of docker (runtime = "containerd"); '
            "docs/kubeedge-versions.md has the steps.",
            **details,
        )
    return passed(summary, **details)


# What keadm runs besides itself (verified against the real binaries of v1.13.0 and
# v1.23.1, tests/real/): step 1 is `bash -c "pidof edgecore"` — without bash or pidof it
# reads the unset exit code as 0 and stops with "EdgeCore is already running on this
# node". The last step starts edgecore through systemd when `file /sbin/init` exits 0
# (util.HasSystemd), which GNU file does whenever it is installed, /sbin/init or not:
# then `bash -c "sudo systemctl daemon-reload && sudo systemctl enable edgecore && sudo
# systemctl start edgecore"`, and sudo is needed too; without `file`, keadm starts
# edgecore itself (`edgecore > /var/log/kubeedge/edgecore.log 2>&1 &`).
ALWAYS = ("bash", "pidof")
SYSTEMD_PATH = ("sudo",)


@check(
    "join-tools",
    "Tools keadm runs",
    "bash and pidof are installed (keadm's first step), and sudo where keadm starts edgecore "
    "through systemd (whenever `file` is installed).",
)
async def join_tools(ctx: CheckContext) -> Outcome:
    through_systemd = await keadm_sees_systemd(ctx.host)
    needed = [*ALWAYS, *(SYSTEMD_PATH if through_systemd else ())]
    how = (
        "keadm starts edgecore through systemd (`file /sbin/init` succeeds)"
        if through_systemd
        else "keadm starts edgecore itself (`file /sbin/init` fails or there is no `file`)"
    )
    missing = [tool for tool in needed if ctx.host.which(tool) is None]
    if missing:
        where = (
            'at its first step ("EdgeCore is already running on this node")'
            if set(missing) & set(ALWAYS)
            else 'at its last step ("start edgecore failed: failed to exec ...")'
        )
        return failed(
            f"{' and '.join(missing)} not found: keadm join would fail {where}; {how}",
            f"apt install {' '.join(_PACKAGES.get(t, t) for t in missing)}",
            missing=missing,
            through_systemd=through_systemd,
        )
    return passed(
        f"{', '.join(needed[:-1])} and {needed[-1]} are installed; {how}",
        tools=needed,
        through_systemd=through_systemd,
    )


_PACKAGES = {"pidof": "sysvinit-utils"}


async def keadm_sees_systemd(host: Host) -> bool:
    """keadm's own test (util.HasSystemd): `file /sbin/init` exits 0."""
    if host.which("file") is None:
        return False
    try:
        return (await host.run(["file", "/sbin/init"], timeout=10)).returncode == 0
    except CommandError:
        return False  # Debian's package of each tool, where not its name

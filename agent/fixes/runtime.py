"""cri, runtime-cgroup, sandbox-image, runtime-images, cni: mend containerd for the join —
enable its CRI plugin, make runc use the join's cgroup driver (every other setting kept,
a backup left, containerd restarted and asked again), pull images through the CRI,
install CNI plugins from a release tarball the user gives and a bridge config."""

from __future__ import annotations

import asyncio
import shutil
import stat
import tarfile
from pathlib import Path

from agent import containerd_config
from agent.checks.runtime import CNI_BIN_DIR, CNI_CONF_DIR, CRI_TIMEOUT_S
from agent.fixes.base import CannotFix, FixContext, fixes
from kedge.cri import CriClient, CriError
from kedge.elf import header_machine
from kedge.kubeedge import ARCH_BY_ELF_MACHINE, ARCH_BY_MACHINE
from kedge.private_files import write_private
from kedge.wire import CheckResult

UNIT = "containerd.service"
BACKUP_SUFFIX = ".kedge-backup"
ANSWER_WAIT_S = 60.0


def _read(fx: FixContext) -> str:
    text = fx.host.read_text(containerd_config.PATH)
    if text is None:
        raise CannotFix(
            f"{containerd_config.PATH} does not exist: containerd runs on its defaults",
            f"containerd config default > {containerd_config.PATH}, then kedge-agent fix again",
        )
    try:
        containerd_config.parse(text)
    except containerd_config.ConfigUnreadable as exc:
        raise CannotFix(
            f"{exc}; it is never overwritten", "Fix it by hand, then kedge-agent fix again."
        ) from exc
    return text


async def _rewrite_and_restart(fx: FixContext, new: str, why: str) -> None:
    fx.change(
        "write", containerd_config.PATH, f"{why} (every other line kept; backup {BACKUP_SUFFIX})"
    )
    fx.change("run", f"systemctl restart {UNIT}", "containerd reads its config only at start")
    if fx.dry_run:
        return
    path = fx.host.path(containerd_config.PATH)
    mode = stat.S_IMODE(path.stat().st_mode)
    shutil.copy2(path, path.with_name(path.name + BACKUP_SUFFIX))
    # Whole or not at all: containerd must never start on half a file.
    write_private(path, new, mode=mode)
    await fx.restart(UNIT, "journalctl -u containerd -e")
    await _answering(fx)


async def _answering(fx: FixContext) -> None:
    """Wait (bounded) until containerd answers the CRI again after its restart."""
    client = CriClient(fx.settings.runtime_endpoint, timeout=CRI_TIMEOUT_S)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ANSWER_WAIT_S
    while True:
        try:
            await client.version()
        except CriError as exc:
            if loop.time() > deadline:
                raise CannotFix(f"containerd did not answer the CRI within {ANSWER_WAIT_S:g} s "
                                f"after the restart: {exc}", "journalctl -u containerd -e") from exc  # fmt: skip
        else:
            return
        await asyncio.sleep(0.25)


@fixes("cri")
async def fix_cri(fx: FixContext, result: CheckResult) -> None:
    text = _read(fx)
    if not containerd_config.parse(text).cri_disabled:
        raise CannotFix("the CRI plugin is not disabled in the config; containerd does not serve it anyway",
                        result.remedy)  # fmt: skip
    await _rewrite_and_restart(fx, containerd_config.with_cri_enabled(text),
                               'the CRI plugin enabled ("cri" taken out of disabled_plugins)')  # fmt: skip


@fixes("runtime-cgroup")
async def fix_runtime_cgroup(fx: FixContext, result: CheckResult) -> None:
    found = fx.facts.cgroup
    if found is None:
        raise CannotFix("the check could not read containerd's cgroup driver", result.remedy)
    target = found.join_driver  # what the check worked out from cgroup_driver and containerd
    if target == found.docker_driver:
        return
    text = _read(fx)
    want = target == "systemd"
    await _rewrite_and_restart(fx, containerd_config.with_systemd_cgroup(text, want),
                               f"SystemdCgroup = {'true' if want else 'false'} for runc")  # fmt: skip
    if fx.dry_run:
        return
    now = containerd_config.parse(fx.host.read_text(containerd_config.PATH) or "")
    if now.systemd_cgroup != want:
        raise CannotFix(f"containerd restarted but its config still says SystemdCgroup = {now.systemd_cgroup}",
                        f"Check {containerd_config.PATH} and containerd's --config flag in its unit.")  # fmt: skip


@fixes("sandbox-image")
async def fix_sandbox_image(fx: FixContext, result: CheckResult) -> None:
    found = fx.facts.runtime
    if found is None or not found.sandbox_image:
        raise CannotFix("the check could not tell the runtime's sandbox image", result.remedy)
    fx.change(
        "pull", found.sandbox_image, f"through {found.name}'s CRI (its registry settings apply)"
    )
    if fx.dry_run:
        return
    try:
        await CriClient(found.endpoint).pull(found.sandbox_image, timeout=600)
    except CriError as exc:
        raise CannotFix(
            f"{found.name} could not pull {found.sandbox_image}: {exc}", result.remedy
        ) from exc


@fixes("runtime-images")
async def fix_runtime_images(fx: FixContext, result: CheckResult) -> None:
    found = fx.facts.runtime
    missing = [str(ref) for ref in result.details.get("missing") or []]
    if found is None or not missing:
        raise CannotFix("the check could not tell which images are missing", result.remedy)
    client = CriClient(found.endpoint)
    for ref in missing:
        fx.change("pull", ref, f"through {found.name}'s CRI (its registry settings apply)")
        if fx.dry_run:
            continue
        try:
            await client.pull(ref, timeout=600)
        except CriError as exc:
            raise CannotFix(f"{found.name} could not pull {ref}: {exc}", result.remedy) from exc


# A plain bridge network for the board's pods, as the CNI project's own example has it.
BRIDGE_CONFLIST = """{
  "cniVersion": "1.0.0",
  "name": "kedge",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
"""
BRIDGE_FILE = f"{CNI_CONF_DIR}/10-kedge-bridge.conflist"
MAX_PLUGIN_BYTES = 256 * 1024 * 1024


def plugins_in(archive: Path) -> dict[str, bytes]:
    """name -> content of each plain file at the top of a CNI plugins release tarball.
    Links, devices, nested paths and oversized members are refused, never extracted."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if not member.isfile() or "/" in name or not name or name.startswith("."):
                    continue
                if member.size > MAX_PLUGIN_BYTES:
                    raise CannotFix(f"{archive}: {name} is larger than {MAX_PLUGIN_BYTES >> 20} MB")
                data = tar.extractfile(member)
                if data is not None:
                    found[name] = data.read()
    except (OSError, tarfile.TarError) as exc:
        raise CannotFix(f"{archive}: not a readable tar archive: {exc}") from exc
    return found


@fixes("cni")
async def fix_cni(fx: FixContext, result: CheckResult) -> None:
    missing = [str(p) for p in result.details.get("missing") or []]
    have_config = bool(result.details.get("files"))
    # Where the runtime looks (the check read containerd's cni settings), not a guess.
    bin_dir = str(result.details.get("bin_dir") or CNI_BIN_DIR)
    bridge_file = f"{result.details.get('config_dir') or CNI_CONF_DIR}/{Path(BRIDGE_FILE).name}"
    wanted = missing if have_config else ["bridge", "host-local", "portmap", "loopback"]
    wanted = [p for p in wanted if not fx.host.exists(f"{bin_dir}/{p}")]
    if result.details.get("wrong_arch"):
        raise CannotFix("CNI plugins built for another architecture are installed; kedge does not "
                        "replace binaries it did not install", result.remedy)  # fmt: skip
    if wanted and fx.cni_archive is None:
        raise CannotFix(f"the CNI plugins {', '.join(wanted)} are missing and no --cni-archive was given",
                        result.remedy)  # fmt: skip
    plugins = plugins_in(fx.cni_archive) if wanted and fx.cni_archive else {}
    board = ARCH_BY_MACHINE.get(fx.host.machine())
    for name in wanted:
        if name not in plugins:
            raise CannotFix(f"{fx.cni_archive} has no {name} plugin", result.remedy)
        arch = ARCH_BY_ELF_MACHINE.get(header_machine(plugins[name]) or -1)
        if board is not None and arch != board:
            raise CannotFix(
                f"{fx.cni_archive}: {name} is built for {arch or 'no known architecture'}, "
                f"this board is {board}",
                f"Use the cni-plugins-linux-{board} release tarball.",
            )
    for name in wanted:
        fx.change("write", f"{bin_dir}/{name}", f"from {fx.cni_archive}")
    if not have_config:
        fx.change("write", bridge_file, "a bridge network, 10.88.0.0/16, with portmap")
    if fx.dry_run:
        return
    for name in wanted:
        target = fx.host.path(f"{bin_dir}/{name}")
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        write_private(target, plugins[name], mode=0o755)
    if not have_config:
        conf = fx.host.path(bridge_file)
        conf.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        write_private(conf, BRIDGE_CONFLIST, mode=0o644)

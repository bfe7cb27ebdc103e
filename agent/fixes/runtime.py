"""cri, runtime-cgroup, sandbox-image: mend containerd for the join — enable its CRI
plugin, make runc use the join's cgroup driver (every other setting kept, a backup left,
containerd restarted and asked again), pull the pod sandbox image through the CRI."""

from __future__ import annotations

import asyncio
import shutil
import stat

from agent import containerd_config
from agent.checks.runtime import CRI_TIMEOUT_S
from agent.fixes.base import CannotFix, FixContext, fixes
from kedge.cri import CriClient, CriError
from kedge.errors import CommandError
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
    try:
        restart = await fx.host.run(["systemctl", "restart", UNIT], timeout=120)
    except CommandError as exc:
        raise CannotFix(
            f"could not restart containerd: {exc}", "systemctl restart containerd"
        ) from exc
    if not restart.ok:
        raise CannotFix(f"systemctl restart containerd exited {restart.returncode}: {restart.stderr.strip()}",
                        "journalctl -u containerd -e")  # fmt: skip
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
    target = join_driver_of(fx, found.docker_driver)
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


def join_driver_of(fx: FixContext, runtime_driver: str) -> str:
    setting = fx.settings.cgroup_driver
    return runtime_driver if setting == "auto" else setting


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

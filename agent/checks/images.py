"""images: the images `keadm join` pulls are already on the board (check never pulls)."""

from __future__ import annotations

import asyncio

from agent.checks.context import CheckContext
from agent.checks.facts import ImageFacts
from agent.checks.registry import Outcome, check, failed, not_used, passed, warned
from kedge.kubeedge import ARCH_BY_MACHINE, Release, sandbox_alias


@check(
    "images",
    "KubeEdge images",
    "The images keadm join needs are present locally, so the join works on a slow or offline link.",
    needs=("docker",),
)
async def images(ctx: CheckContext) -> Outcome:
    if ctx.settings.runtime != "docker":
        # From v1.14 keadm pulls through the CRI (cri-dockerd's too): runtime-images asks it.
        return not_used(f"runtime is {ctx.settings.runtime}: the runtime-images check covers it")
    wanted = Release(ctx.settings.kubeedge_version).join_images(ctx.settings.image_repository)
    arches = await asyncio.gather(*(ctx.docker.image_architecture(ref) for ref in wanted))
    missing = [ref for ref, arch in zip(wanted, arches, strict=True) if arch is None]
    alias = (
        sandbox_alias(ctx.settings.image_repository) if ctx.settings.runtime == "docker" else None
    )
    untagged = alias if alias and not await ctx.docker.image_exists(alias[1]) else None
    ctx.facts.images = ImageFacts(tuple(wanted), tuple(missing), untagged)
    details: dict[str, object] = {"images": wanted, "missing": missing}
    # keadm copies edgecore out of the installation image by running it and ignores the
    # copy's exit status (util/image.go@v1.13.0, CopyResources): an image for another
    # architecture leaves no edgecore, and the join ends 300 s later in a timeout.
    board = ARCH_BY_MACHINE.get(ctx.host.machine())
    installation = wanted[0]
    built_for = arches[0]
    if board and built_for not in (None, board, "unknown"):
        details["installation_image_arch"] = built_for
        return failed(
            f"{installation} is built for {built_for}, this board is {board}: keadm could not "
            "copy edgecore out of it",
            f"Remove it and pull the {board} one: docker rmi {installation} && "
            "kedge-agent fix --only images (a mirror or archive must serve that architecture).",
            **details,
        )
    # keadm's docker copy step gives the container its own command, `/bin/sh -c "cp …"`:
    # an entrypoint swallows it and nothing is copied (seen on the real v1.13.0 keadm).
    entrypoint = await ctx.docker.image_entrypoint(installation) if built_for else None
    if entrypoint:
        details["installation_image_entrypoint"] = entrypoint
        return failed(
            f"{installation} has an entrypoint ({' '.join(entrypoint)}): keadm's copy step "
            'runs /bin/sh -c "cp …" as its command, the entrypoint swallows it, and keadm '
            "copies no edgecore without noticing",
            f"Use the release's own image (no entrypoint): docker rmi {installation} && "
            "kedge-agent fix --only images; a home-built one needs its ENTRYPOINT removed.",
            **details,
        )
    if missing:
        pulls = "\n".join(f"  docker pull {ref}" for ref in missing)
        return warned(
            f"{len(missing)} of {len(wanted)} images missing: {', '.join(missing)}",
            f"Pre-pull them (keadm join would pull them over a possibly slow link):\n{pulls}",
            **details,
        )
    if untagged:
        pulled, asked = untagged
        return warned(
            f"{asked} is missing: edgecore asks docker for its pod sandbox image by that name "
            "whatever image_repository says, and would pull it from Docker Hub at the first pod",
            f"kedge-agent fix --only images tags {pulled} as {asked} "
            f"(by hand: docker tag {pulled} {asked}).",
            sandbox_image=asked,
            **details,
        )
    return passed(f"all {len(wanted)} images present", **details)

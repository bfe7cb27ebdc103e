"""images: the images `keadm join` pulls are already on the board (check never pulls)."""

from __future__ import annotations

import asyncio

from agent.checks.context import CheckContext
from agent.checks.facts import ImageFacts
from agent.checks.registry import Outcome, check, passed, warned
from kedge.kubeedge import join_images


@check(
    "images",
    "KubeEdge images",
    "The images keadm join needs are present locally, so the join works on a slow or offline link.",
    needs=("docker",),
)
async def images(ctx: CheckContext) -> Outcome:
    wanted = join_images(ctx.settings.kubeedge_version, ctx.settings.image_repository)
    present = await asyncio.gather(*(ctx.docker.image_exists(ref) for ref in wanted))
    missing = [ref for ref, ok in zip(wanted, present, strict=True) if not ok]
    ctx.facts.images = ImageFacts(tuple(wanted), tuple(missing))
    details = {"images": wanted, "missing": missing}
    if missing:
        pulls = "\n".join(f"  docker pull {ref}" for ref in missing)
        return warned(
            f"{len(missing)} of {len(wanted)} images missing: {', '.join(missing)}",
            f"Pre-pull them (keadm join would pull them over a possibly slow link):\n{pulls}",
            **details,
        )
    return passed(f"all {len(wanted)} images present", **details)

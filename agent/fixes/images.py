"""images: pull what keadm join will need, retrying, through the configured mirrors."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from agent.diagnose import recognise
from agent.fixes.base import CannotFix, FixContext, fixes
from kedge.errors import DockerError, DockerUnavailable
from kedge.kubeedge import join_images, sandbox_alias
from kedge.wire import CheckResult


def _registry(ref: str) -> str:
    first = ref.split("/", 1)[0]
    return (
        first
        if "/" in ref and ("." in first or ":" in first)
        else "docker.io (or docker's registry-mirrors)"
    )


def _hub_path(ref: str) -> str:
    """The repository path of a Docker Hub reference, as a mirror serves it."""
    return ref if "/" in ref.split(":", 1)[0] else f"library/{ref}"


class _Progress:
    """One line per image; on a terminal, a bar redrawn in place."""

    def __init__(self, fx: FixContext, ref: str) -> None:
        self.fx, self.ref = fx, ref
        self.layers: dict[str, str] = {}
        self.tty = sys.stderr.isatty()

    def __call__(self, msg: dict[str, Any]) -> None:
        if "id" in msg and msg.get("status") not in (None, "Pulling from " + self.ref):
            self.layers[str(msg["id"])] = str(msg["status"])
        if self.tty and self.layers:
            done = sum(1 for s in self.layers.values() if s in ("Pull complete", "Already exists"))
            width = 20
            filled = width * done // len(self.layers)
            sys.stderr.write(
                f"\r  {self.ref} [{'#' * filled}{'.' * (width - filled)}] {done}/{len(self.layers)} layers"
            )
            sys.stderr.flush()

    def end(self) -> None:
        if self.tty and self.layers:
            sys.stderr.write("\n")


async def _pull_once(fx: FixContext, ref: str, source: str) -> None:
    progress = _Progress(fx, ref)
    try:
        await fx.docker.pull(source, progress)
        if source != ref:
            await fx.docker.tag(source, ref)
    finally:
        progress.end()


async def pull_with_retries(fx: FixContext, ref: str) -> str:
    """Pull `ref` directly, then from each mirror; return where it came from."""
    sources = [ref] + [f"{m.rstrip('/')}/{_hub_path(ref)}" for m in fx.settings.registry_mirrors]
    errors: list[str] = []
    for source in sources:
        for attempt in range(1, fx.settings.pull_retries + 1):
            try:
                await _pull_once(fx, ref, source)
            except DockerUnavailable as exc:
                # Another source or attempt cannot help while docker itself is gone.
                raise CannotFix(
                    f"cannot pull {ref}: {exc}",
                    "Check docker: systemctl status docker; journalctl -u docker. Then run "
                    "kedge-agent fix --only images again (an interrupted pull leaves no image).",
                    docker_gone=True,
                ) from exc
            except DockerError as exc:
                errors.append(f"{source} (attempt {attempt}): {exc}")
                fx.emit(
                    f"  pull {source} failed (attempt {attempt}/{fx.settings.pull_retries}): {exc}"
                )
                if attempt < fx.settings.pull_retries:
                    await asyncio.sleep(fx.settings.pull_backoff_s * 2 ** (attempt - 1))
            else:
                return source
    last = errors[-1] if errors else "no source to pull from"
    causes = recognise(last)
    remedy = causes[0].remedy if causes else (
        "Check the board reaches the registry, add a mirror to registry_mirrors, or pre-load the "
        "images: docker save on a connected machine, then kedge-agent fix --only images --from-archive FILE."
    )  # fmt: skip
    raise CannotFix(f"cannot pull {ref} from {_registry(ref)}: {last}", remedy)


@fixes("images")
async def fix_images(fx: FixContext, result: CheckResult) -> None:
    wanted = join_images(fx.settings.kubeedge_version, fx.settings.image_repository)
    missing = list(fx.facts.images.missing) if fx.facts.images else []
    if fx.from_archive is not None and missing:
        fx.change("load", str(fx.from_archive), "images from a docker save archive")
        if not fx.dry_run:
            try:
                await fx.docker.load(fx.from_archive)
            except (DockerError, OSError) as exc:
                raise CannotFix(
                    f"cannot load {fx.from_archive}: {exc}",
                    "Check the file is a `docker save` tar.",
                ) from exc
            present = await asyncio.gather(*(fx.docker.image_exists(r) for r in wanted))
            missing = [r for r, ok in zip(wanted, present, strict=True) if not ok]
    failures: list[CannotFix] = []
    for ref in missing:
        fx.change("pull", ref)
        if fx.dry_run:
            continue
        try:
            source = await pull_with_retries(fx, ref)
            fx.emit(f"  pulled {ref}{f' from {source}' if source != ref else ''}")
        except CannotFix as exc:
            fx.failed(str(exc))
            failures.append(exc)
            if exc.docker_gone:
                break
    if failures:
        raise CannotFix("; ".join(str(f) for f in failures), failures[0].remedy)
    alias = sandbox_alias(fx.settings.image_repository)
    if alias and (fx.dry_run or not await fx.docker.image_exists(alias[1])):
        pulled, asked = alias
        fx.change("tag", asked, f"as {pulled}: the name edgecore asks for")
        if not fx.dry_run:
            try:
                await fx.docker.tag(pulled, asked)
            except DockerError as exc:
                raise CannotFix(f"cannot tag {pulled} as {asked}: {exc}",
                                f"docker tag {pulled} {asked}") from exc  # fmt: skip

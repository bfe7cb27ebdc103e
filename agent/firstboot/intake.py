"""The seed off the boot partition: found on the documented paths, checked, kept in the
state directory (seed_state) and scrubbed where it was — its secret overwritten, fsynced,
then the file removed. On flash the old blocks may survive wear levelling; what bounds a
lost card's harm is the secret's few uses and short life (docs/firstboot.md)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from agent import board_identity, seed_state
from kedge import seed
from kedge.errors import ConfigError
from kedge.host import Host
from kedge.names import is_dns1123_subdomain


@dataclass(frozen=True)
class Found:
    where: str  # the board path (/boot/firmware/kedge-seed.toml)
    text: str
    sha256: str


def find(host: Host) -> Found | None:
    for where in seed.SEED_PATHS:
        text = host.read_text(where, limit=seed.MAX_SEED_BYTES + 1)
        if text is not None:
            return Found(where, text, hashlib.sha256(text.encode()).hexdigest())
    return None


def node_name(host: Host, pattern: str, where: str) -> str:
    facts = board_identity.facts(host, host.hostname())
    missing = [p for p in seed.PLACEHOLDERS if "{" + p + "}" in pattern and p not in facts]
    if missing:
        raise ConfigError(
            f"{where}: node_name {pattern!r} uses {{{missing[0]}}}, which this board does not "
            "have (no serial in the device tree or DMI, or no wired network interface): use "
            "another placeholder"
        )
    name = seed.render_name(pattern, facts)
    if not is_dns1123_subdomain(name):
        raise ConfigError(f"{where}: node_name {pattern!r} makes {name!r} here, not a node name")
    return name


def take(host: Host, state_dir: Path, found: Found) -> seed_state.TakenSeed:
    """Check the seed, keep it in the state directory, scrub it on the boot partition.
    A seed that does not pass is left where it is (ConfigError naming file and key)."""
    parsed = seed.parse(found.text, found.where)
    taken = seed_state.TakenSeed(
        **{**parsed.model_dump(exclude={"secret"}), "sha256": found.sha256,
           "found_at": found.where, "node": node_name(host, parsed.node_name, found.where)},
    )  # fmt: skip
    seed_state.save(state_dir, taken, parsed.secret)
    scrub(host.path(found.where))
    return taken


def scrub(path: Path) -> None:
    """Overwrite the file's bytes in place, sync, remove it and sync its directory."""
    with path.open("r+b") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        f.write(b"\0" * size)
        f.flush()
        os.fsync(f.fileno())
    path.unlink()
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""The seed once the board has taken it off the boot partition (docs/firstboot.md): its
settings, without the secret, in <state_dir>/seed.json, a settings layer under the
user's own (labels, allow_remote, registry_mirrors); the secret alone in seed.secret
(0600) until enrollment has spent it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import SecretStr

from kedge import seed
from kedge.private_files import read_model, write_private

TAKEN_FILE = "seed.json"
SECRET_FILE = "seed.secret"  # noqa: S105 - a file name
LAYERED = ("labels", "allow_remote", "registry_mirrors")


class TakenSeed(seed.Seed):
    """The seed as kept on the board: where it was found and its digest (a different file
    on the boot partition is a corrected seed), the name rendered from its pattern."""

    secret: SecretStr = SecretStr("")  # kept in SECRET_FILE, not here
    sha256: str
    found_at: str
    node: str


def save(state_dir: Path, taken: TakenSeed, secret: SecretStr) -> None:
    write_private(state_dir / SECRET_FILE, secret.get_secret_value() + "\n")
    write_private(
        state_dir / TAKEN_FILE, taken.model_dump_json(indent=1, exclude={"secret"}) + "\n"
    )


def load(state_dir: Path) -> TakenSeed | None:
    return read_model(state_dir / TAKEN_FILE, TakenSeed, "seed",
                      "not a seed kedge-agent took: remove it and put the seed back on the "
                      "boot partition")  # fmt: skip


def secret(state_dir: Path) -> SecretStr | None:
    try:
        return SecretStr((state_dir / SECRET_FILE).read_text().strip())
    except FileNotFoundError:
        return None


def spent(state_dir: Path) -> None:
    """Enrollment used the secret: the board keeps no copy of it."""
    (state_dir / SECRET_FILE).unlink(missing_ok=True)


def as_defaults(state_dir: Path) -> dict[str, Any]:
    taken = load(state_dir)
    if taken is None:
        return {}
    return {key: getattr(taken, key) for key in LAYERED if getattr(taken, key)}

"""Files that hold secrets or state: written whole or not at all, never readable by
others, never through a planted link.

A temporary file with an unguessable name is created 0600 with O_EXCL|O_NOFOLLOW (a
leftover or attacker-made file of that name is never reused, so its mode cannot leak
into ours), written, fsynced, renamed over the target and the directory fsynced: after
a crash or a full disk the target holds the old content or the new, never a prefix.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from kedge.errors import ConfigError, first_problem

M = TypeVar("M", bound=BaseModel)
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def write_private(path: Path, data: bytes | str, *, mode: int = 0o600, fsync: bool = True) -> None:
    """Replace `path` atomically with `data`; OSError (ENOSPC, EACCES, …) leaves the old
    file and no temporary behind. fsync=False for files that may be lost in a power cut
    (a status file): the rename is still atomic for readers, and flash is spared."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, _FLAGS, mode)
    try:
        try:
            # The umask may have narrowed mode further; never widen beyond what was asked.
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        tmp.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if fsync:
        _fsync_dir(path.parent)


MAX_SECRET_BYTES = 64 * 1024


def read_secret(path: Path, what: str, *, hint: str = "") -> str:
    """The secret held in `path` (a token, a password): its text without the surrounding
    whitespace. Unreadable, empty, oversized or not UTF-8 is a ConfigError naming `what`
    and the file, with `hint` saying how to mend it: an empty secret is never usable."""
    mend = f" ({hint})" if hint else ""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read: {exc.strerror}{mend}") from exc
    try:
        text = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path}: not UTF-8 text{mend}") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise ConfigError(f"{what} {path}: larger than {MAX_SECRET_BYTES} bytes{mend}")
    if not text:
        raise ConfigError(f"{what} {path}: the file is empty{mend}")
    return text


def create_private(path: Path) -> None:
    """Make sure `path` exists with mode 0600 (for files others open by name, such as an
    SQLite database): created exclusively, or an existing one narrowed to 0600."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        fd = os.open(path, _FLAGS, 0o600)
    except FileExistsError:
        if path.is_symlink():
            raise OSError(f"{path} is a symbolic link; refusing to use it") from None
        path.chmod(0o600)
        return
    os.close(fd)


def move_aside(path: Path, why: str) -> Path:
    """Rename a damaged file to `<name>.corrupt-<n>` (kept for a post-mortem) and return
    the new name; the caller starts a fresh one."""
    for n in range(1, 1000):
        target = path.with_name(f"{path.name}.corrupt-{n}")
        if not target.exists():
            path.replace(target)
            return target
    raise OSError(f"cannot move {path} aside ({why}): too many earlier copies")


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def read_model(path: Path, model: type[M], key: str, remedy: str) -> M | None:
    """The document kedge wrote at `path` (None when there is none); ConfigError naming
    the file, the first bad key (`key` when the whole document is wrong) and `remedy`
    when it cannot be read or is not what was written."""
    try:
        return model.model_validate_json(path.read_bytes())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except ValidationError as exc:
        raise ConfigError(f"{path}: {first_problem(exc, key)} ({remedy})") from None

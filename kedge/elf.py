"""Read the target machine of an ELF executable from its header (no dependencies)."""

from __future__ import annotations

import struct
from pathlib import Path

ELF_MAGIC = b"\x7fELF"


def elf_machine(path: Path) -> int | None:
    """The header's e_machine, or None when the file is not ELF (a script, say)."""
    with path.open("rb") as fh:
        return header_machine(fh.read(20))


def header_machine(header: bytes) -> int | None:
    """e_machine of an ELF image's first bytes (a file not yet written, say), or None."""
    if len(header) < 20 or not header.startswith(ELF_MAGIC):
        return None
    byteorder = "<" if header[5] == 1 else ">"
    (machine,) = struct.unpack_from(byteorder + "H", header, 18)
    return int(machine)

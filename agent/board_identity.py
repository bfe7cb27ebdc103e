"""What identifies this board's hardware, for a seed's node-name pattern and (issue 16)
for recognising a re-flashed board: its serial and its first wired MAC, read through the
host seam so a fixture board or a mounted image answers the same way.

The serial: the device tree's (`/proc/device-tree/serial-number`, what Rockchip and
Raspberry Pi boards expose, NUL-terminated), else the DMI product serial of a PC or VM,
else none. The MAC: the first interface in name order that is a real device (it has
`/sys/class/net/<if>/device`) with a non-zero address — stable across boots, unlike a
random wlan MAC or a bridge's.
"""

from __future__ import annotations

import re

from kedge.host import Host

SERIAL_SOURCES = ("/proc/device-tree/serial-number", "/sys/class/dmi/id/product_serial")
_NOT_A_SERIAL = {"", "0", "none", "default string", "to be filled by o.e.m.", "not specified"}
_MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


def serial(host: Host) -> str | None:
    for source in SERIAL_SOURCES:
        value = (host.read_text(source, limit=256) or "").replace("\0", "").strip()
        if value.lower() not in _NOT_A_SERIAL:
            return value
    return None


def mac(host: Host) -> str | None:
    for name in sorted(host.entries("/sys/class/net")):
        if name == "lo" or not host.exists(f"/sys/class/net/{name}/device"):
            continue
        address = (host.read_text(f"/sys/class/net/{name}/address", limit=64) or "").strip().lower()
        if _MAC_RE.fullmatch(address) and address != "00:00:00:00:00:00":
            return address
    return None


def facts(host: Host, hostname: str) -> dict[str, str]:
    """The values a seed's node_name placeholders take ({serial}, {mac}, {hostname});
    a fact the board lacks is absent (the pattern using it cannot be rendered)."""
    found = {"hostname": hostname}
    if (s := serial(host)) is not None:
        found["serial"] = s
    if (m := mac(host)) is not None:
        found["mac"] = m
    return found

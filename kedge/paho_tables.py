"""paho-mqtt's MQTT 5 property tables, built once instead of once per packet.

paho's `Properties.__init__` builds its three lookup tables (property names, types, and
which packets may carry which property: some 70 entries, each assignment through a
validating `__setattr__`), and `clear()` re-derives every attribute name, for every
PUBLISH it decodes: with paho-mqtt 2.2.0 a board's health report takes 26 µs to decode,
9 µs with the tables shared (bench/paho_decode.py, side by side). At the fleet ingest's
1,000 and more reports a second it was the largest single cost of receiving one.

The tables are constants, never written after construction, so one copy can serve
every instance. `install()` hands paho's decoder (and only it) a subclass that shares
them; everything else about `Properties` — its validation when a property is set, its
decoding, its attribute API — is paho's own. When paho's shape is not the one this was
written against, nothing is replaced.
"""

from __future__ import annotations

from typing import Any, ClassVar

from paho.mqtt import _packet, properties
from paho.mqtt.packettypes import PacketTypes

_TABLE_NAMES = ("types", "names", "properties")


class SharedTablesProperties(properties.Properties):
    """paho's Properties with its constant tables built once."""

    _tables: ClassVar[dict[str, Any]] = {}
    _attributes: ClassVar[tuple[str, ...]] = ()  # the names properties are stored under

    def __init__(self, packetType: int) -> None:  # noqa: N803 - paho's parameter name
        object.__setattr__(self, "packetType", packetType)
        for name, table in self._tables.items():
            object.__setattr__(self, name, table)

    def clear(self) -> None:
        # paho's clear() re-derives every attribute name from the table on each call
        for name in self._attributes:
            self.__dict__.pop(name, None)


def install() -> bool:
    """Share the tables in paho's PUBLISH decoder; False (and nothing changed) when
    paho is not the version this was written against."""
    if getattr(_packet, "Properties", None) is SharedTablesProperties:
        return True
    if getattr(_packet, "Properties", None) is not properties.Properties:
        return False
    paho_properties: Any = properties.Properties  # paho's own, untyped
    reference = paho_properties(PacketTypes.PUBLISH)
    if not all(isinstance(getattr(reference, n, None), list | dict) for n in _TABLE_NAMES):
        return False
    SharedTablesProperties._tables = {n: getattr(reference, n) for n in _TABLE_NAMES}
    SharedTablesProperties._attributes = tuple(n.replace(" ", "") for n in reference.names)
    _packet.Properties = SharedTablesProperties  # type: ignore[attr-defined]
    return True

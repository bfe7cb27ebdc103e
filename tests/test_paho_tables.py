"""kedge.paho_tables: paho's decoder with shared property tables decodes exactly what
paho's own does, and instances still keep their own properties and paho's checks."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from paho.mqtt import _packet, properties
from paho.mqtt.enums import MQTTProtocolVersion
from paho.mqtt.exception import MQTTException
from paho.mqtt.packettypes import PacketTypes

import kedge.mqtt  # noqa: F401 - installs the shared tables, as every kedge program does
from kedge.paho_tables import SharedTablesProperties, install

PAHO: Any = properties.Properties  # paho's own, untyped


def publish(props: Any, payload: bytes = b'{"x":1}') -> bytes:
    topic = b"kedge/rk3000-1/health"
    return (
        struct.pack("!H", len(topic)) + topic + struct.pack("!H", 7) + bytes(props.pack()) + payload
    )


def rich() -> Any:
    p = PAHO(PacketTypes.PUBLISH)
    p.MessageExpiryInterval = 30
    p.ContentType = "application/json"
    p.CorrelationData = b"\x01\x02"
    p.UserProperty = [("a", "1"), ("b", "2")]
    return p


def test_kedge_installs_the_shared_tables_in_the_decoder() -> None:
    assert install() is True
    assert vars(_packet)["Properties"] is SharedTablesProperties


@pytest.mark.parametrize("props", [PAHO(PacketTypes.PUBLISH), rich()], ids=["none", "rich"])
def test_a_publish_decodes_as_paho_decodes_it(props: Any) -> None:
    body = publish(props)
    shared = _packet.decode_publish(0x32, body, MQTTProtocolVersion.MQTTv5)
    _packet.Properties = properties.Properties  # type: ignore[attr-defined]
    try:
        own = _packet.decode_publish(0x32, body, MQTTProtocolVersion.MQTTv5)
    finally:
        install()
    assert type(shared.properties) is SharedTablesProperties
    assert type(own.properties) is properties.Properties
    shared_props: Any = shared.properties
    own_props: Any = own.properties
    assert shared_props.json() == own_props.json()
    assert (shared.topic, shared.payload, shared.mid) == (own.topic, own.payload, own.mid)


def test_instances_share_tables_not_values() -> None:
    one: Any = SharedTablesProperties(PacketTypes.PUBLISH)
    two: Any = SharedTablesProperties(PacketTypes.PUBLISH)
    one.ContentType = "text/plain"
    assert one.json() == {"ContentType": "text/plain"}
    assert two.json() == {}
    assert two.isEmpty()
    assert one.names is two.names  # the point: built once
    one.clear()
    assert one.isEmpty()


def test_paho_still_checks_what_is_set() -> None:
    p: Any = SharedTablesProperties(PacketTypes.PUBLISH)
    with pytest.raises(MQTTException, match="Property name must be one of"):
        p.NoSuchProperty = 1
    with pytest.raises(MQTTException, match="does not apply to packet type"):
        p.SessionExpiryInterval = 5  # a CONNECT property

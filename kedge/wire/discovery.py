"""Home Assistant MQTT discovery configs (homeassistant/<component>/<unique_id>/config):
the keys kedge sends, named as Home Assistant's MQTT integration reads them."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kedge.wire._base import Payload


class Device(Payload):
    identifiers: list[str]
    name: str
    manufacturer: str
    model: str
    sw_version: str


class Origin(Payload):
    name: str
    sw_version: str


class DiscoveryConfig(Payload):
    name: str
    unique_id: str
    object_id: str
    state_topic: str
    value_template: str
    availability_topic: str
    payload_available: str
    payload_not_available: str
    device: Device
    origin: Origin
    expire_after: int | None = Field(None, description="seconds without a state: unavailable")
    unit_of_measurement: str | None = None
    device_class: str | None = None
    state_class: Literal["measurement", "total", "total_increasing"] | None = None
    entity_category: Literal["diagnostic", "config"] | None = None
    payload_on: str | None = None
    payload_off: str | None = None

    def to_json(self) -> str:
        # Home Assistant treats a present null as a value: leave unset keys out.
        return self.model_dump_json(by_alias=True, exclude_none=True)

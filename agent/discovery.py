"""Home Assistant MQTT discovery: one device per board, its sensors and problem flags,
all tied to the board's availability topic (the Last Will)."""

from __future__ import annotations

import json
from typing import Any

from agent import __version__
from kedge.wire import AVAILABLE, NOT_AVAILABLE, Device, DiscoveryConfig, Origin, Topics
from kedge.wire.discovery import CHECK_GROUPS, ENTITIES, discovery_topic, object_id


def discovery_messages(
    topics: Topics, discovery_prefix: str, report_interval: float
) -> list[tuple[str, str]]:
    """(topic, payload) pairs to publish retained."""
    oid = object_id(topics.node)
    device = Device(identifiers=[f"kedge_{oid}"], name=topics.node, manufacturer="kedge",
                    model="KubeEdge edge board", sw_version=__version__)  # fmt: skip
    common: dict[str, Any] = {
        "availability_topic": topics.status,
        "payload_available": AVAILABLE,
        "payload_not_available": NOT_AVAILABLE,
        "device": device,
        "origin": Origin(name="kedge-agent", sw_version=__version__),
    }
    expire = max(1, round(3 * report_interval))

    def sensor(name: str, key: str, template: str, **extra: Any) -> tuple[str, str, dict[str, Any]]:
        return ("sensor", key, {"name": name, "state_topic": topics.health, "value_template": template,
                                "expire_after": expire, **extra})  # fmt: skip

    def problem(
        name: str, key: str, topic: str, template: str, **extra: Any
    ) -> tuple[str, str, dict[str, Any]]:
        return ("binary_sensor", key, {"name": name, "state_topic": topic, "value_template": template,
                                       "device_class": "problem", "payload_on": "ON", "payload_off": "OFF",
                                       **extra})  # fmt: skip

    entities = [
        sensor(
            "CPU",
            "cpu",
            "{{ value_json.cpu_percent }}",
            unit_of_measurement="%",
            state_class="measurement",
        ),
        sensor(
            "Memory used",
            "memory",
            "{{ value_json.memory.percent }}",
            unit_of_measurement="%",
            state_class="measurement",
        ),
        sensor(
            "Disk used",
            "disk",
            "{{ value_json.disks['/'].percent }}",
            unit_of_measurement="%",
            state_class="measurement",
        ),
        sensor(
            "Temperature",
            "temperature",
            "{{ value_json.temperature_c }}",
            unit_of_measurement="°C",
            device_class="temperature",
            state_class="measurement",
        ),
        sensor(
            "Clock offset",
            "clock_offset",
            "{{ value_json.clock_offset_s }}",
            unit_of_measurement="s",
            device_class="duration",
            entity_category="diagnostic",
        ),
        sensor(
            "Last seen",
            "last_seen",
            "{{ value_json.timestamp }}",
            device_class="timestamp",
            entity_category="diagnostic",
        ),
        problem(
            "Docker",
            "docker",
            topics.health,
            "{{ 'OFF' if value_json.docker.up else 'ON' }}",
            expire_after=expire,
        ),
        problem(
            "edgecore",
            "edgecore",
            topics.health,
            "{{ 'OFF' if value_json.edgecore.active else 'ON' }}",
            expire_after=expire,
        ),
    ]
    for group, ids in CHECK_GROUPS.items():
        template = (
            "{{ 'ON' if value_json.checks | selectattr('id', 'in', " + json.dumps(list(ids)) + ") "
            "| selectattr('status', 'in', ['fail', 'error']) | list | count > 0 else 'OFF' }}"
        )
        entities.append(problem(f"Preflight: {group.replace('_', ' ')}", f"check_{group}", topics.checks,
                                template, entity_category="diagnostic"))  # fmt: skip
    # The broker allows a board exactly the topics of kedge.wire.discovery.ENTITIES.
    if [(c, k) for c, k, _ in entities] != list(ENTITIES):
        raise RuntimeError("agent/discovery.py announces other entities than ENTITIES")
    messages = []
    for component, key, config in entities:
        unique = f"kedge_{oid}_{key}"
        payload = DiscoveryConfig.model_validate(
            {**common, **config, "unique_id": unique, "object_id": unique}, extra="forbid"
        )
        topic = discovery_topic(discovery_prefix, topics.node, component, key)
        messages.append((topic, payload.to_json()))
    return messages

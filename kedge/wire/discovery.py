"""Home Assistant MQTT discovery configs
(<prefix>/<component>/kedge_<node>/<key>/config): the entities a board announces, the
topics they take, and the keys kedge sends, named as Home Assistant's MQTT integration
reads them.

ENTITIES is the one list of what a board announces: the agent builds exactly these
(agent/discovery.py) and the broker lets a board publish exactly these topics
(cloud_api/broker/identities.py) — literal topics, so a board cannot fill the broker
with retained discovery under names of its own choosing."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from kedge.wire._base import Payload

# Check groups shown as one "problem" binary sensor each.
CHECK_GROUPS: dict[str, tuple[str, ...]] = {
    "platform": ("arch", "keadm", "kubeedge-version", "join-tools"),
    "conflicts": ("conflicts",),
    "clock": ("clock",),
    "container_runtime": (
        "docker",
        "cgroup-driver",
        "images",
        "runtime-images",
        "cri",
        "runtime-cgroup",
        "sandbox-image",
        "cni",
    ),
    "cloudcore": ("cloudcore",),
    "board": ("leftovers", "resources", "kmsg", "node-name", "ports", "pod-dns", "edgecore"),
}
SENSORS = ("cpu", "memory", "disk", "temperature", "clock_offset", "last_seen")
PROBLEMS = ("docker", "edgecore", *(f"check_{group}" for group in CHECK_GROUPS))
# (component, key) of every entity a board announces, in order.
ENTITIES: tuple[tuple[str, str], ...] = (
    *(("sensor", key) for key in SENSORS),
    *(("binary_sensor", key) for key in PROBLEMS),
)


def object_id(node: str) -> str:
    """A node name as a Home Assistant object id (no dots)."""
    return node.replace(".", "_")


def discovery_topic(discovery_prefix: str, node: str, component: str, key: str) -> str:
    # The node_id level (kedge_<node>) keeps every board's discovery apart.
    return f"{discovery_prefix}/{component}/kedge_{object_id(node)}/{key}/config"


def discovery_topics(discovery_prefix: str, node: str) -> list[str]:
    """Every discovery topic the board may publish (retained)."""
    return [discovery_topic(discovery_prefix, node, c, k) for c, k in ENTITIES]


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

"""The MQTT topics of one board, and the patterns that match every board's."""

from __future__ import annotations

from dataclasses import dataclass

AVAILABLE, NOT_AVAILABLE = "online", "offline"


@dataclass(frozen=True)
class Topics:
    prefix: str
    node: str

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.node}"

    @property
    def status(self) -> str:
        """Retained `online`/`offline` (the Last Will): plain words, not JSON, as Home
        Assistant's availability topics expect."""
        return f"{self.base}/status"

    @property
    def health(self) -> str:
        return f"{self.base}/health"

    @property
    def checks(self) -> str:
        return f"{self.base}/checks"

    @property
    def firstboot(self) -> str:
        """Retained: the first boot's progress (FirstBootProgress), until and after it ends."""
        return f"{self.base}/firstboot"

    @property
    def cmd(self) -> str:
        return f"{self.base}/cmd"

    @property
    def cmd_result(self) -> str:
        return f"{self.base}/cmd/result"


def every_board(prefix: str, leaf: str) -> str:
    """The subscription for one kind of message from every board: kedge/+/health."""
    return f"{prefix}/+/{leaf}"


def node_of(prefix: str, topic: str) -> str | None:
    """The node a board topic belongs to (None for a topic outside `prefix`)."""
    head = prefix + "/"
    if not topic.startswith(head):
        return None
    node, _, _ = topic[len(head) :].partition("/")
    return node or None

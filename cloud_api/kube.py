"""kubectl, run through the host seam with -o json, parsed into small typed records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import CommandError, HostError
from agent.host import Host


class KubeError(HostError):
    """kubectl failed or answered something unexpected."""


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str
    value: str = ""


@dataclass(frozen=True)
class Node:
    name: str
    addresses: tuple[str, ...]
    taints: tuple[Taint, ...]
    edge: bool


class Kubectl:
    def __init__(self, host: Host, kubeconfig: Path, *, timeout: float = 30.0) -> None:
        self.host, self.kubeconfig, self.timeout = host, kubeconfig, timeout

    async def json(self, *args: str) -> Any:
        try:
            result = await self.host.run(["kubectl", f"--kubeconfig={self.kubeconfig}", *args, "-o", "json"],
                                         timeout=self.timeout)  # fmt: skip
        except CommandError as exc:
            raise KubeError(str(exc)) from exc
        if not result.ok:
            raise KubeError(
                f"kubectl {' '.join(args)}: {result.stderr.strip() or f'exit {result.returncode}'}"
            )
        try:
            return json.loads(result.stdout)
        except ValueError as exc:
            raise KubeError(f"kubectl {' '.join(args)}: not JSON") from exc

    async def server_version(self) -> tuple[int, int]:
        v = (await self.json("version"))["serverVersion"]
        return int(v["major"]), int("".join(ch for ch in v["minor"] if ch.isdigit()))

    async def nodes(self) -> list[Node]:
        items = (await self.json("get", "nodes"))["items"]
        return [
            Node(
                name=i["metadata"]["name"],
                addresses=tuple(a["address"] for a in i.get("status", {}).get("addresses", [])),
                taints=tuple(
                    Taint(t["key"], t.get("effect", ""), t.get("value", ""))
                    for t in i["spec"].get("taints") or []
                ),
                edge="node-role.kubernetes.io/edge" in i["metadata"].get("labels", {}),
            )
            for i in items
        ]

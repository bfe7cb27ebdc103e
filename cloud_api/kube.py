"""kubectl, run through the host seam with -o json, parsed into small typed records."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kedge.errors import CommandError, HostError
from kedge.host import Host


class KubeError(HostError):
    """kubectl failed or answered something unexpected."""


class NotFound(KubeError):
    """The object does not exist (kubectl's "Error from server (NotFound)")."""


@dataclass(frozen=True)
class Taint:
    key: str
    effect: str
    value: str = ""


@dataclass(frozen=True)
class Deployment:
    image: str
    available: bool
    tolerations: tuple[dict[str, str], ...]

    @property
    def tag(self) -> str:
        return self.image.rpartition(":")[2] if ":" in self.image else "latest"


@dataclass(frozen=True)
class Node:
    name: str
    addresses: tuple[str, ...]
    taints: tuple[Taint, ...]
    edge: bool


class Kubectl:
    def __init__(self, host: Host, kubeconfig: Path, *, timeout: float = 30.0) -> None:
        self.host, self.kubeconfig, self.timeout = host, kubeconfig, timeout

    async def run(self, *args: str) -> str:
        """kubectl's output; NotFound or KubeError when it says no."""
        try:
            result = await self.host.run(["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
                                         timeout=self.timeout)  # fmt: skip
        except CommandError as exc:
            raise KubeError(str(exc)) from exc
        if not result.ok and "(NotFound)" in result.stderr:
            raise NotFound(result.stderr.strip())
        if not result.ok:
            raise KubeError(
                f"kubectl {' '.join(args)}: {result.stderr.strip() or f'exit {result.returncode}'}"
            )
        return result.stdout

    async def json(self, *args: str) -> Any:
        out = await self.run(*args, "-o", "json")
        try:
            return json.loads(out)
        except ValueError as exc:
            raise KubeError(f"kubectl {' '.join(args)}: not JSON") from exc

    async def delete_secret(self, namespace: str, name: str) -> bool:
        """Whether there was one to delete."""
        try:
            await self.run("-n", namespace, "delete", "secret", name)
        except NotFound:
            return False
        return True

    async def restart(self, namespace: str, deployment: str) -> None:
        await self.run("-n", namespace, "rollout", "restart", f"deployment/{deployment}")

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

    async def namespace_exists(self, name: str) -> bool:
        try:
            await self.json("get", "namespace", name)
        except NotFound:
            return False
        return True

    async def deployment(self, namespace: str, name: str) -> Deployment | None:
        try:
            d = await self.json("-n", namespace, "get", "deployment", name)
        except NotFound:
            return None
        spec = d["spec"]["template"]["spec"]
        conditions = {c["type"]: c["status"] for c in d.get("status", {}).get("conditions", [])}
        return Deployment(image=spec["containers"][0]["image"], available=conditions.get("Available") == "True",
                          tolerations=tuple(spec.get("tolerations") or ()))  # fmt: skip

    async def pod_nodes(self, namespace: str) -> list[tuple[str, str]]:
        """(pod phase, node name or "") for each pod of the namespace."""
        items = (await self.json("-n", namespace, "get", "pods"))["items"]
        return [
            (i.get("status", {}).get("phase", ""), i["spec"].get("nodeName", "")) for i in items
        ]

    async def warning_events(self, namespace: str) -> list[str]:
        """The namespace's Warning events, newest last, as "Reason: message"."""
        items = (await self.json("-n", namespace, "get", "events"))["items"]
        return [f"{e['reason']}: {e['message']}" for e in items if e.get("type") == "Warning"]

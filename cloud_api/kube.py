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
    allocatable: tuple[tuple[str, str], ...] = ()
    ready: bool | None = None  # the Ready condition; None when the node reports none
    ready_reason: str = ""
    # edged reports kubeletVersion "<k8s>-kubeedge-<release>" (edge/pkg/edged/edged.go)
    kubeedge_version: str | None = None

    def can_hold(self, requests: dict[str, str]) -> bool:
        have = dict(self.allocatable)
        return all(r not in have or quantity(have[r]) >= quantity(q) for r, q in requests.items())


@dataclass(frozen=True)
class Container:
    """A pod's container as the kubelet reports it: its waiting reason (ContainerCreating,
    CrashLoopBackOff, ImagePullBackOff) and how it last ended."""

    pod: str
    phase: str
    node: str
    waiting: str
    restarts: int
    last_exit: int | None


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


_UNITS = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}  # fmt: skip


def quantity(value: str) -> float:
    """A Kubernetes resource quantity in base units: "100m" → 0.1, "512Mi" → 536870912."""
    for suffix in sorted(_UNITS, key=len, reverse=True):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * _UNITS[suffix]
    return float(value)


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

    async def apply(self, manifest: dict[str, Any]) -> str:
        """`kubectl apply -f -` with the manifest on stdin."""
        try:
            result = await self.host.run(["kubectl", f"--kubeconfig={self.kubeconfig}", "apply", "-f", "-"],
                                         timeout=self.timeout, input_data=json.dumps(manifest).encode())  # fmt: skip
        except CommandError as exc:
            raise KubeError(str(exc)) from exc
        if not result.ok:
            raise KubeError(
                f"kubectl apply: {result.stderr.strip() or f'exit {result.returncode}'}"
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

    async def delete_node(self, name: str) -> bool:
        """Whether there was one to delete."""
        try:
            await self.run("delete", "node", name)
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
                allocatable=tuple(sorted(i.get("status", {}).get("allocatable", {}).items())),
                kubeedge_version=_kubeedge_release(
                    i.get("status", {}).get("nodeInfo", {}).get("kubeletVersion", "")
                ),
                **_ready(i.get("status", {}).get("conditions") or []),
            )
            for i in items
        ]

    async def pods_by_node(self) -> dict[str, list[dict[str, str]]]:
        """Every scheduled pod in every namespace, by node: namespace, name, phase and
        the reason a container waits or the pod is not running (kubectl's STATUS column)."""
        items = (await self.json("get", "pods", "--all-namespaces"))["items"]
        placed: dict[str, list[dict[str, str]]] = {}
        for i in items:
            node = i.get("spec", {}).get("nodeName")
            if not node:
                continue
            status = i.get("status", {})
            waiting = [((c.get("state") or {}).get("waiting") or {}).get("reason", "")
                       for c in status.get("containerStatuses") or []]  # fmt: skip
            reason = next((w for w in waiting if w), status.get("reason", ""))
            placed.setdefault(node, []).append({
                "namespace": i["metadata"].get("namespace", "default"), "name": i["metadata"]["name"],
                "phase": status.get("phase", ""), "reason": reason,
            })  # fmt: skip
        return placed

    async def namespace_exists(self, name: str) -> bool:
        return await self.namespace_phase(name) is not None

    async def namespace_phase(self, name: str) -> str | None:
        """Active, Terminating, or None when there is no such namespace."""
        try:
            ns = await self.json("get", "namespace", name)
        except NotFound:
            return None
        return str(ns.get("status", {}).get("phase", "Active"))

    async def helm_release(self, namespace: str, name: str) -> tuple[int, str] | None:
        """The newest revision of Helm release `name` and its status, from the records
        Helm's secrets driver keeps (Secrets labelled owner=helm,name=NAME)."""
        items = (
            await self.json("-n", namespace, "get", "secrets", "-l", f"owner=helm,name={name}")
        )["items"]
        revisions = [(int(i["metadata"]["labels"]["version"]), i["metadata"]["labels"].get("status", ""))
                     for i in items if i["metadata"].get("labels", {}).get("version", "").isdigit()]  # fmt: skip
        return max(revisions) if revisions else None

    async def logs(self, namespace: str, deployment: str, *, previous: bool, tail: int) -> str:
        args = ["-n", namespace, "logs", f"deployment/{deployment}", f"--tail={tail}"]
        return await self.run(*args, *(["--previous"] if previous else []))

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

    async def containers(self, namespace: str) -> list[Container]:
        items = (await self.json("-n", namespace, "get", "pods"))["items"]
        found = []
        for i in items:
            status = i.get("status", {})
            for c in status.get("containerStatuses") or [{}]:
                ended = (c.get("lastState") or {}).get("terminated") or {}
                found.append(Container(
                    pod=i["metadata"]["name"], phase=status.get("phase", ""),
                    node=i["spec"].get("nodeName", ""),
                    waiting=((c.get("state") or {}).get("waiting") or {}).get("reason", ""),
                    restarts=int(c.get("restartCount", 0)),
                    last_exit=ended.get("exitCode"),
                ))  # fmt: skip
        return found

    async def events(self, namespace: str) -> list[Event]:
        """The namespace's events, oldest first."""
        items = (await self.json("-n", namespace, "get", "events"))["items"]
        return [Event(e.get("type", ""), e.get("reason", ""), e.get("message", "")) for e in items]

    async def warning_events(self, namespace: str) -> list[str]:
        """The namespace's Warning events, newest last, as "Reason: message"."""
        return [
            f"{e.reason}: {e.message}" for e in await self.events(namespace) if e.type == "Warning"
        ]


def _ready(conditions: list[dict[str, Any]]) -> dict[str, Any]:
    for c in conditions:
        if c.get("type") == "Ready":
            ready = c.get("status") == "True"
            why = "" if ready else f"{c.get('reason', '')}: {c.get('message', '')}".strip(": ")
            return {"ready": ready, "ready_reason": why}
    return {}


def _kubeedge_release(kubelet_version: str) -> str | None:
    _, sep, release = kubelet_version.partition("-kubeedge-")
    return release if sep and release.startswith("v") else None

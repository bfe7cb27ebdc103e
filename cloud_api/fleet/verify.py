"""The field story's last step made repeatable: a pod on every Ready edge node.

The seed guide ends with an nginx Deployment landing on the boards. Here each Ready edge
node gets a one-replica Deployment pinned to it (a nodeSelector on its hostname label,
and a toleration for the edge taint some clusters put on edge nodes); the job waits up
to a bound for each pod to run, reports per board what happened — Running, or Pending
with the kubelet's or scheduler's reason — and deletes what it made, whatever the
outcome."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from cloud_api.jobs import Job, JobFailed
from cloud_api.kube import Kubectl, KubeError

NAMESPACE = "default"
LABEL = "kedge-verify"
POLL_S = 1.0
EDGE_TOLERATION = {
    "key": "node-role.kubernetes.io/edge",
    "operator": "Exists",
    "effect": "NoSchedule",
}
REQUESTS = {"requests": {"cpu": "10m", "memory": "16Mi"}}


def deployment(node: str, image: str) -> dict[str, Any]:
    name = f"{LABEL}-{node}"[:63].rstrip("-.")
    labels = {"app": LABEL, "kedge.io/node": node[:63]}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {"kubernetes.io/hostname": node},
                    "tolerations": [EDGE_TOLERATION],
                    "containers": [{"name": "probe", "image": image, "resources": REQUESTS}],
                },
            },
        },
    }


def _verdict(pod: dict[str, Any] | None, events: list[str]) -> dict[str, str]:
    if pod is None:
        return {"result": "pending", "reason": events[-1] if events else "no pod was created"}
    status = pod.get("status", {})
    if status.get("phase") == "Running":
        return {"result": "running", "reason": ""}
    for c in status.get("containerStatuses") or []:
        waiting = (c.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            return {
                "result": "pending",
                "reason": f"{waiting['reason']}: {waiting.get('message', '')}".rstrip(": "),
            }
    return {
        "result": "pending",
        "reason": events[-1] if events else f"phase {status.get('phase', '?')}",
    }


async def verify(job: Job, kubectl: Kubectl, image: str, timeout_s: float) -> dict[str, Any]:
    job.enter("finding Ready edge nodes")
    try:
        nodes = [n.name for n in await kubectl.nodes() if n.edge and n.ready]
    except KubeError as exc:
        raise JobFailed(f"cannot read the nodes: {exc}") from exc
    if not nodes:
        raise JobFailed("no edge node is Ready: join a board first (kedge-agent join)")
    job.log(f"{len(nodes)} Ready edge nodes: {', '.join(nodes)}")
    try:
        job.enter(f"starting {image} on each")
        manifest = {
            "apiVersion": "v1",
            "kind": "List",
            "items": [deployment(n, image) for n in nodes],
        }
        await kubectl.apply(manifest)
        job.enter(f"waiting up to {timeout_s:g} s for the pods to run")
        verdicts = await _wait(job, kubectl, nodes, timeout_s)
    except KubeError as exc:
        raise JobFailed(f"kubectl failed: {exc}") from exc
    finally:
        job.enter("removing what the check made")
        try:
            await kubectl.run(
                "-n", NAMESPACE, "delete", "deployment", "-l", f"app={LABEL}", "--wait=false"
            )
        except KubeError as exc:
            job.log(
                "could not delete the verify Deployments "
                f"(kubectl -n {NAMESPACE} delete deployment -l app={LABEL}): {exc}"
            )
    running = [n for n, v in verdicts.items() if v["result"] == "running"]
    for node, v in sorted(verdicts.items()):
        job.log(f"{node}: {v['result']}{' — ' + v['reason'] if v['reason'] else ''}")
    return {
        "image": image,
        "ok": len(running) == len(nodes),
        "running": len(running),
        "nodes": verdicts,
    }


async def _wait(
    job: Job, kubectl: Kubectl, nodes: list[str], timeout_s: float
) -> dict[str, dict[str, str]]:
    deadline = time.monotonic() + timeout_s
    while True:
        pods = (await kubectl.json("-n", NAMESPACE, "get", "pods", "-l", f"app={LABEL}"))["items"]
        by_node = {p["metadata"].get("labels", {}).get("kedge.io/node"): p for p in pods}
        done = all(
            (by_node.get(n) or {}).get("status", {}).get("phase") == "Running" for n in nodes
        )
        if done or time.monotonic() >= deadline:
            events = await kubectl.warning_events(NAMESPACE)
            verdicts = {}
            for n in nodes:
                mine = [e for e in events if n in e or f"{LABEL}-{n}" in e]
                verdicts[n] = _verdict(by_node.get(n), mine)
            return verdicts
        await asyncio.sleep(POLL_S)

"""A stand-in for kubectl over the simulated cluster (cluster.py): the few calls the
cloud API makes, with kubectl's JSON shapes, NotFound texts and exit codes."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from tests.kubeedge_sim import cluster


def _not_found(kind: str, name: str) -> int:
    sys.stderr.write(f'Error from server (NotFound): {kind} "{name}" not found\n')
    return 1


def _node(n: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": n["name"], "labels": n.get("labels", {})}, "spec": {"taints": n.get("taints", [])},
            "status": {"addresses": [{"type": "InternalIP", "address": n.get("ip", "")}],
                       "allocatable": n.get("allocatable", {}),
                       "nodeInfo": {"kubeletVersion": n.get("kubeletVersion", "v1.23.15")},
                       "conditions": [_ready(n)]}}  # fmt: skip


def _ready(n: dict[str, Any]) -> dict[str, str]:
    """The node's Ready condition: edgecontroller keeps an edge node Ready while its
    edgecore reports (a test sets "ready": false with a reason to say otherwise)."""
    if n.get("ready", True):
        return {
            "type": "Ready",
            "status": "True",
            "reason": "EdgeReady",
            "message": "edge is posting ready status",
        }
    return {"type": "Ready", "status": "False", "reason": n.get("reason", "NodeStatusUnknown"),
            "message": n.get("message", "Kubelet stopped posting node status.")}  # fmt: skip


def _deployment(d: dict[str, Any]) -> dict[str, Any]:
    up = cluster.ready(d)
    return {
        "metadata": {"name": "cloudcore", "namespace": "kubeedge"},
        "spec": {"template": {"spec": {"tolerations": d["tolerations"], "hostNetwork": True,
                                       "containers": [{"name": "cloudcore", "image": d["image"]}]}}},
        "status": {"availableReplicas": 1 if up else 0,
                   "conditions": [{"type": "Available", "status": "True" if up else "False"}]},
    }  # fmt: skip


def _pod(d: dict[str, Any], namespace: str) -> dict[str, Any]:
    """The pod's phase and its container's state, the way the kubelet reports them: a
    container that keeps exiting waits in CrashLoopBackOff with its last termination."""
    status: dict[str, Any] = {"phase": d["phase"]}
    if d.get("pulling_until"):
        waiting = {"reason": "ContainerCreating"}
        status["containerStatuses"] = [{"name": "cloudcore", "ready": False, "restartCount": 0,
                                        "state": {"waiting": waiting}}]  # fmt: skip
    elif d.get("available"):
        crashed = d.get("exit") if not cluster.ready(d) else None
        state = ({"waiting": {"reason": "CrashLoopBackOff",
                              "message": "back-off 10s restarting failed container=cloudcore"}}
                 if crashed else {"running": {}})  # fmt: skip
        status["containerStatuses"] = [{
            "name": "cloudcore", "ready": cluster.ready(d), "restartCount": d.get("restarts", 0),
            "state": state, "lastState": {"terminated": crashed} if crashed else {},
        }]  # fmt: skip
    return {"metadata": {"name": "cloudcore-5876c76687-9xkqm", "namespace": namespace},
            "spec": {"nodeName": d["node"]} if d["node"] else {}, "status": status}  # fmt: skip


def _apply(kubeconfig: str, manifest: dict[str, Any]) -> int:
    """Deployments only (what the verify job applies): each becomes one pod, placed by
    its nodeSelector (workload_pod)."""
    items = manifest.get("items", [manifest]) if manifest.get("kind") == "List" else [manifest]
    with cluster.update(kubeconfig) as state:
        for d in items:
            meta, spec = d["metadata"], d["spec"]["template"]["spec"]
            state["workloads"][f"{meta.get('namespace', 'default')}/{meta['name']}"] = {
                "app": meta["labels"]["app"], "labels": d["spec"]["template"]["metadata"]["labels"],
                "node": spec.get("nodeSelector", {}).get("kubernetes.io/hostname"),
                "image": spec["containers"][0]["image"], "created": time.time(),
            }  # fmt: skip
    for d in items:
        print(f"deployment.apps/{d['metadata']['name']} created")
    return 0


def _all_pods(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every namespace's pods: cloudcore's, the workloads', and those a test placed on a
    node (`pods`: namespace, name, phase and the reason a container waits)."""
    pods = [
        _pod(d, key.split("/")[0]) for key, d in sorted(data["deployments"].items()) if "image" in d
    ]
    pods += [workload_pod(data, w) for _, w in sorted(data["workloads"].items())]
    for node in data["nodes"]:
        for p in node.get("pods", []):
            waiting = [{"name": p["name"], "ready": False, "restartCount": 0,
                        "state": {"waiting": {"reason": p["reason"]}}}] if p.get("reason") else []  # fmt: skip
            pods.append({"metadata": {"name": p["name"], "namespace": p["namespace"]},
                         "spec": {"nodeName": node["name"]},
                         "status": {"phase": p["phase"], "containerStatuses": waiting}})  # fmt: skip
    return pods


def workload_pod(data: dict[str, Any], w: dict[str, Any]) -> dict[str, Any]:
    """The pod of a pinned Deployment: Pending while no Ready node has that hostname
    (the scheduler's event says so), waiting with the kubelet's reason when its node has
    a pod problem set by a test (an image it cannot pull), Running a moment after
    creation otherwise."""
    node = next((n for n in data["nodes"] if n["name"] == w["node"]), None)
    meta = {
        "name": f"{w['labels']['app']}-{w['node']}-7d9c5-x2k4p",
        "namespace": "default",
        "labels": w["labels"],
    }
    if node is None or not node.get("ready", True):
        return {"metadata": meta, "spec": {}, "status": {"phase": "Pending"}}
    problem = node.get("pod_problem")
    if problem:
        waiting = {
            "reason": problem["reason"],
            "message": problem["message"].replace("{image}", w["image"]),
        }
        return {"metadata": meta, "spec": {"nodeName": node["name"]},
                "status": {"phase": "Pending", "containerStatuses": [{"name": "probe", "ready": False,
                           "restartCount": 0, "state": {"waiting": waiting}}]}}  # fmt: skip
    running = time.time() - w["created"] > 0.5
    return {"metadata": meta, "spec": {"nodeName": node["name"]},
            "status": {"phase": "Running" if running else "Pending"}}  # fmt: skip


VALUED = ("--kubeconfig", "-n", "--namespace", "-o", "--output", "-p", "--patch", "--type", "-l",
          "--selector", "--tail", "-f", "--filename")  # fmt: skip


def _split(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """Flags with values (both --flag value and --flag=value), and the other words."""
    flags: dict[str, str] = {}
    words: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in VALUED and i + 1 < len(argv):
            flags[a], i = argv[i + 1], i + 2
        elif a.startswith("--") and "=" in a and a.split("=", 1)[0] in VALUED:
            key, value = a.split("=", 1)
            flags[key], i = value, i + 1
        else:
            words.append(a)
            i += 1
    return flags, words


def main(argv: list[str], root: str) -> int:
    flags, words = _split(argv)
    kubeconfig = flags.get("--kubeconfig", "/root/.kube/config")
    namespace = flags.get("-n") or flags.get("--namespace") or "default"
    patch = flags.get("-p") or flags.get("--patch")
    try:
        cluster.reconcile(kubeconfig)
        data = cluster.load(kubeconfig)
    except FileNotFoundError:
        sys.stderr.write(f"error: stat {kubeconfig}: no such file or directory\n")
        return 1
    major, minor = data["version"].lstrip("v").split(".")[:2]
    if words[:1] == ["version"]:
        print(json.dumps({"clientVersion": {"major": "1", "minor": "23", "gitVersion": "v1.23.17"},
                          "serverVersion": {"major": major, "minor": minor, "gitVersion": data["version"]}}))  # fmt: skip
        return 0
    if words[:2] == ["get", "nodes"]:
        print(json.dumps({"items": [_node(n) for n in data["nodes"]]}))
        return 0
    if words[:2] in (["get", "namespace"], ["get", "ns"]):
        name = words[2]
        if name not in data["namespaces"]:
            return _not_found("namespaces", name)
        phase = "Terminating" if name in data["terminating"] else "Active"
        print(json.dumps({"metadata": {"name": name}, "status": {"phase": phase}}))
        return 0
    if words[:2] in (["get", "deployment"], ["get", "deploy"]):
        d = data["deployments"].get(f"{namespace}/{words[2]}")
        if d is None:
            return _not_found("deployments.apps", words[2])
        print(json.dumps(_deployment(d)))
        return 0
    if words[:2] == ["get", "pods"] and ("--all-namespaces" in words or "-A" in words):
        print(json.dumps({"items": _all_pods(data)}))
        return 0
    if words[:2] in (["get", "pods"], ["get", "pod"]) and (flags.get("-l") or "").startswith(
        "app="
    ):
        app = flags["-l"].removeprefix("app=")
        pods = [workload_pod(data, w) for k, w in sorted(data["workloads"].items())
                if w["app"] == app and k.startswith(f"{namespace}/")]  # fmt: skip
        print(json.dumps({"items": pods}))
        return 0
    if words[:2] in (["get", "pods"], ["get", "pod"]):
        d = data["deployments"].get(f"{namespace}/cloudcore")
        pods = [] if d is None or "image" not in d else [_pod(d, namespace)]
        print(json.dumps({"items": pods}))
        return 0
    if words[:2] in (["get", "secrets"], ["get", "secret"]) and len(words) == 2:
        wanted = dict(
            kv.split("=", 1)
            for kv in (flags.get("-l") or flags.get("--selector") or "").split(",")
            if kv
        )
        items = [{"metadata": {"name": key.split("/", 1)[1], "namespace": namespace, "labels": sec.get("labels", {})},
                  "type": sec.get("type", "Opaque")}
                 for key, sec in data["secrets"].items()
                 if key.startswith(f"{namespace}/") and wanted.items() <= sec.get("labels", {}).items()]  # fmt: skip
        print(json.dumps({"items": items}))
        return 0
    if words[:1] == ["logs"] and words[1:2] in (["deployment/cloudcore"], ["deploy/cloudcore"]):
        log = cluster.path_of(kubeconfig).with_name("cloudcore-pod.log")
        lines = log.read_text().splitlines() if log.exists() else []
        tail = int(flags.get("--tail", "-1"))
        print("\n".join(lines[-tail:] if tail >= 0 else lines))
        return 0
    if words[:2] == ["get", "events"]:
        items = [{"reason": e["reason"], "message": e["message"], "type": e["type"],
                  "involvedObject": {"name": e["object"].split("/")[1]}}
                 for e in data["events"] if e["namespace"] == namespace]  # fmt: skip
        print(json.dumps({"items": items}))
        return 0
    if (
        words[:1] == ["patch"]
        and words[1:3] in (["deployment", "cloudcore"], ["deploy", "cloudcore"])
        and patch
    ):
        d = data["deployments"].get(f"{namespace}/cloudcore")
        if d is None:
            return _not_found("deployments.apps", "cloudcore")
        for op in json.loads(patch):
            if op.get("path") == "/spec/template/spec/tolerations" and op.get("op") in (
                "add",
                "replace",
            ):
                d["tolerations"] = op["value"]
        cluster.stop_pod(data)  # a new pod template: the old pod goes
        cluster.start_cloudcore(data)
        cluster.save(kubeconfig, data)
        cluster.reconcile(kubeconfig)
        print("deployment.apps/cloudcore patched")
        return 0
    if words[:1] == ["apply"] and flags.get("-f") == "-":
        return _apply(kubeconfig, json.loads(sys.stdin.read()))
    if words[:2] == ["delete", "deployment"] and (flags.get("-l") or "").startswith("app="):
        app = flags["-l"].removeprefix("app=")
        with cluster.update(kubeconfig) as state:
            gone = [k for k, w in state["workloads"].items() if w["app"] == app]
            for k in gone:
                del state["workloads"][k]
        for k in gone:
            print(f'deployment.apps "{k.split("/", 1)[1]}" deleted')
        return 0
    if words[:2] == ["delete", "node"] and len(words) == 3:
        with cluster.update(kubeconfig) as state:
            kept = [n for n in state["nodes"] if n["name"] != words[2]]
            found = len(kept) != len(state["nodes"])
            state["nodes"] = kept
        if not found:
            return _not_found("nodes", words[2])
        print(f'node "{words[2]}" deleted')
        return 0
    if words[:2] == ["delete", "secret"] and len(words) == 3:
        if data["secrets"].pop(f"{namespace}/{words[2]}", None) is None:
            return _not_found("secrets", words[2])
        cluster.save(kubeconfig, data)
        print(f'secret "{words[2]}" deleted')
        return 0
    if words[:2] == ["rollout", "restart"] and words[2:3] in (
        ["deployment/cloudcore"],
        ["deploy/cloudcore"],
    ):
        if f"{namespace}/cloudcore" not in data["deployments"]:
            return _not_found("deployments.apps", "cloudcore")
        cluster.stop_pod(data)  # a new ReplicaSet: the old pod goes, a new one starts
        cluster.start_cloudcore(data)
        cluster.save(kubeconfig, data)
        cluster.reconcile(kubeconfig)
        print("deployment.apps/cloudcore restarted")
        return 0
    if words[:3] == ["taint", "nodes", "--all"] or (
        words[:2] == ["taint", "nodes"] and "--all" in argv
    ):
        removals = [w[:-1] for w in words[2:] if w.endswith("-")]
        for n in data["nodes"]:
            n["taints"] = [t for t in n.get("taints", []) if t["key"] not in removals]
            print(f"node/{n['name']} untainted")
        cluster.start_cloudcore(data)
        cluster.save(kubeconfig, data)
        cluster.reconcile(kubeconfig)
        return 0
    sys.stderr.write(f'error: unknown command "{" ".join(words)}" for "kubectl"\n')
    return 1

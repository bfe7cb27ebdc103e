"""The simulated Kubernetes cluster behind the fake kubectl and keadm init/reset/gettoken:
one JSON file holding the server version, nodes with taints, namespaces, the cloudcore
Deployment with its pod, secrets and events. Scheduling follows the one rule that
matters here: a pod lands on a node whose NoSchedule taints it all tolerates."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from tests.kubeedge_sim import sim

REPO = Path(__file__).resolve().parents[2]

DEFAULT = {
    "version": "v1.23.17",
    "nodes": [
        {
            "name": "master",
            "ip": "192.168.31.137",
            "taints": [
                {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                {"key": "node-role.kubernetes.io/master", "effect": "NoSchedule"},
            ],
            "labels": {"node-role.kubernetes.io/control-plane": ""},
            # the field story's master: 2 vCPU, 4 GiB, less the kubelet's reservations
            "allocatable": {"cpu": "2", "memory": "3880Mi"},
        },
    ],
    "namespaces": ["default", "kube-system"],
    "deployments": {},
    "secrets": {},
    "events": [],
    # Deployments other than cloudcore (the verify job's), by namespace/name
    "workloads": {},
    # namespace -> when its termination ends (the namespace controller empties it first)
    "terminating": {},
    "termination_s": 1.0,
    # the cloudcore image: how long the kubelet takes to pull it the first time, and
    # which images the node already has
    "image_pull_s": 0.0,
    "pulled": [],
    # how long after it starts cloudcore creates tokensecret (its token manager)
    "token_delay_s": 0.3,
    # kubeedge/cloudcore tags the registry has: another tag ends in ImagePullBackOff
    "registry_tags": [
        "v1.12.0",
        "v1.12.1",
        "v1.12.2",
        "v1.13.0",
        "v1.13.1",
        "v1.13.2",
        "v1.14.0",
        "v1.15.0",
    ],
}


def path_of(kubeconfig: str) -> Path:
    """The cluster file lives beside the kubeconfig that points at it (a kubeconfig
    linked from elsewhere, such as a board's copy, points at the same cluster)."""
    return Path(kubeconfig).resolve().with_name("cluster.json")


def load(kubeconfig: str) -> dict[str, Any]:
    if not Path(kubeconfig).exists():
        raise FileNotFoundError(kubeconfig)
    p = path_of(kubeconfig)
    data: dict[str, Any] = json.loads(json.dumps(DEFAULT))
    if p.exists():
        data.update(json.loads(p.read_text()))
    return data


def save(kubeconfig: str, data: dict[str, Any]) -> None:
    p = path_of(kubeconfig)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, p)


@contextlib.contextmanager
def update(kubeconfig: str) -> Iterator[dict[str, Any]]:
    """Read, change and write the cluster under a lock (the pod writes beside keadm)."""
    with path_of(kubeconfig).with_name("cluster.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = load(kubeconfig)
        yield data
        save(kubeconfig, data)


def reconcile(kubeconfig: str) -> None:
    """The controllers' and the kubelet's part, done lazily whenever a tool looks: a
    terminating namespace goes once its time is up; a pull in progress completes; a
    scheduled, pulled cloudcore gets a running pod process, and a pod that died is
    started again (the kubelet's restart, counted: CrashLoopBackOff)."""
    if not Path(kubeconfig).exists():
        return
    with update(kubeconfig) as data:
        now = time.time()
        for ns, until in list(data["terminating"].items()):
            if now >= until:
                del data["terminating"][ns]
                data["namespaces"] = [n for n in data["namespaces"] if n != ns]
        deploy = data["deployments"].get("kubeedge/cloudcore")
        if deploy is None or "image" not in deploy:
            return
        if deploy.get("pulling_until") and now >= deploy["pulling_until"]:
            del deploy["pulling_until"]
            data["pulled"].append(deploy["image"])
            event(data, "Normal", "Pulled", f'Successfully pulled image "{deploy["image"]}"')
            start_cloudcore(data)
        if not deploy["available"] or sim.alive(deploy.get("pid")):
            return
        if deploy.get("pid"):
            deploy["restarts"] = deploy.get("restarts", 0) + 1
        # posix_spawn, not Popen: the pod outlives whoever started it (keadm, kubectl).
        log = str(path_of(kubeconfig).with_name("cloudcore-pod.log"))
        deploy["pid"] = os.posix_spawn(
            sys.executable,
            [
                sys.executable,
                "-m",
                "tests.kubeedge_sim.cloudcore_pod",
                str(Path(kubeconfig).resolve()),
            ],
            {**os.environ, "PYTHONPATH": str(REPO)},
            file_actions=[
                (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
                (os.POSIX_SPAWN_DUP2, 1, 2),
            ],
            setsid=True,
        )


def ready(deploy: dict[str, Any]) -> bool:
    """The pod runs and serves (cloudcore_pod.py says so once it listens): what makes the
    Deployment Available and helm's wait succeed."""
    pid = deploy.get("pid")
    return bool(
        deploy.get("available") and pid and deploy.get("ready_pid") == pid and sim.alive(pid)
    )


def event(data: dict[str, Any], kind: str, reason: str, message: str) -> None:
    data["events"].append({"namespace": "kubeedge", "object": "pod/cloudcore", "reason": reason,
                           "type": kind, "message": message})  # fmt: skip


def stop_pod(data: dict[str, Any]) -> None:
    """Delete the pod (rollout or namespace deletion): its process ends."""
    deploy = data["deployments"].get("kubeedge/cloudcore") or {}
    pid = deploy.pop("pid", None)
    for gone in ("ready_pid", "restarts", "exit"):
        deploy.pop(gone, None)  # a new pod: its own restart count
    if not sim.alive(pid):
        return
    with contextlib.suppress(psutil.Error):
        proc = psutil.Process(pid)
        proc.send_signal(signal.SIGTERM)
        psutil.wait_procs([proc], timeout=10)
        if proc.is_running():
            proc.kill()


def tolerated(taint: dict[str, str], tolerations: list[dict[str, str]]) -> bool:
    """Kubernetes' rule: Exists matches the key (or every key), Equal also the value;
    an empty effect matches every effect."""
    for t in tolerations:
        effect_ok = not t.get("effect") or t.get("effect") == taint.get("effect")
        if t.get("operator") == "Exists":
            key_ok = not t.get("key") or t.get("key") == taint["key"]
        else:
            key_ok = t.get("key") == taint["key"] and t.get("value", "") == taint.get("value", "")
        if key_ok and effect_ok:
            return True
    return False


# manifests/charts/cloudcore/values.yaml@v1.13.0, cloudCore.resources.requests
REQUESTS = {"cpu": "100m", "memory": "512Mi"}


def quantity(value: str) -> float:
    """A Kubernetes quantity in base units (cores, bytes): "100m", "2", "512Mi", "4Gi"."""
    units = {
        "m": 1e-3,
        "Ki": 2**10,
        "Mi": 2**20,
        "Gi": 2**30,
        "Ti": 2**40,
        "k": 1e3,
        "M": 1e6,
        "G": 1e9,
    }
    for suffix, factor in sorted(units.items(), key=lambda u: -len(u[0])):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * factor
    return float(value)


def schedule(data: dict[str, Any], tolerations: list[dict[str, str]]) -> tuple[str | None, str]:
    """(node, "") or (None, the scheduler's event message). The chart's node affinity
    keeps cloudcore off edge nodes; a NoSchedule taint not tolerated, or less allocatable
    CPU or memory than the chart requests, rules a node out — in the scheduler's words,
    one count per reason (k8s 1.23: "0/1 nodes are available: 1 Insufficient memory.")."""
    reasons: dict[str, int] = {}
    for node in data["nodes"]:
        if "node-role.kubernetes.io/edge" in node.get("labels", {}):
            reasons["node(s) didn't match Pod's node affinity/selector"] = (
                reasons.get("node(s) didn't match Pod's node affinity/selector", 0) + 1
            )
            continue
        taint = next((t for t in node.get("taints", [])
                      if t.get("effect") == "NoSchedule" and not tolerated(t, tolerations)), None)  # fmt: skip
        if taint is not None:
            why = f"node(s) had taint {{{taint['key']}: {taint.get('value', '')}}}, that the pod didn't tolerate"
            reasons[why] = reasons.get(why, 0) + 1
            continue
        allocatable = node.get("allocatable", {})
        short = [r for r in ("cpu", "memory")
                 if r in allocatable and quantity(allocatable[r]) < quantity(REQUESTS[r])]  # fmt: skip
        if short:
            for r in short:
                reasons[f"Insufficient {r}"] = reasons.get(f"Insufficient {r}", 0) + 1
            continue
        return node["name"], ""
    total = len(data["nodes"])
    listed = ", ".join(f"{n} {why}" for why, n in sorted(reasons.items()))
    return None, f"0/{total} nodes are available: {listed}."


def start_cloudcore(data: dict[str, Any]) -> bool:
    """(Re)schedule cloudcore's pod and pull its image: True once its pod may run (the
    pod process itself then serves and creates tokensecret, cloudcore_pod.py)."""
    import base64

    from tests.kubeedge_sim.pki import CloudcorePKI

    deploy = data["deployments"].get("kubeedge/cloudcore")
    if deploy is None:
        return False
    node, why = schedule(data, deploy["tolerations"])
    deploy.update(node=node, phase="Pending", available=False)
    if node is None:
        event(data, "Warning", "FailedScheduling", why)
        return False
    image = deploy["image"]
    if image.rpartition(":")[2] not in data.get("registry_tags", [image.rpartition(":")[2]]):
        # the kubelet's (dockershim's) words for a tag that was never published
        event(data, "Warning", "Failed",
              f'Failed to pull image "{image}": rpc error: code = Unknown desc = Error response from '
              f"daemon: manifest for {image} not found: manifest unknown: manifest unknown")  # fmt: skip
        event(data, "Warning", "BackOff", f'Back-off pulling image "{image}"')
        return False
    if image not in data["pulled"] and data["image_pull_s"] > 0:
        if not deploy.get("pulling_until"):
            deploy["pulling_until"] = time.time() + data["image_pull_s"]
            event(data, "Normal", "Pulling", f'Pulling image "{image}"')
        return False  # reconcile() finishes the pull
    if image not in data["pulled"]:
        data["pulled"].append(image)
    deploy.update(phase="Running", available=True)
    # cloud/pkg/cloudhub/servers/httpserver/server.go@v1.13.0, PrepareAllCerts(): the CA
    # from casecret, else made and saved; then the server certificate from cloudcoresecret —
    #   cloudSecret, err := GetSecret(CloudCoreSecretName, constants.SystemNamespace)
    #   if err != nil { ... certDER, keyDER, err = SignCerts(); ... CreateCloudCoreSecret(...) }
    #   else { certDER = cloudSecret.Data[CloudCoreCertName] ... }
    # so the certificate keeps the addresses of the first start through restarts and
    # upgrades, until someone deletes that secret.
    b64 = base64.b64encode
    advertise = deploy["advertiseAddress"] or ["127.0.0.1"]
    ca = data["secrets"].get("kubeedge/casecret")
    if ca is None:
        pki = CloudcorePKI.create(advertise)
        data["secrets"]["kubeedge/casecret"] = {"cadata": b64(pki.ca_der).decode(),
                                                "cakeydata": b64(pki.ca_key_der).decode()}  # fmt: skip
    else:
        pki = CloudcorePKI.from_secret(base64.b64decode(ca["cadata"]), base64.b64decode(ca["cakeydata"]),
                                       advertise)  # fmt: skip
    if "kubeedge/cloudcoresecret" not in data["secrets"]:
        data["secrets"]["kubeedge/cloudcoresecret"] = {"stream.crt": b64(pki.server_cert_der).decode(),
                                                       "stream.key": b64(pki.server_key_der).decode()}  # fmt: skip
    return True


def with_cloudcore(kubeconfig: Path) -> Path:
    """A kubeconfig (and its cluster) where cloudcore runs: what `keadm reset` finds on
    a board that holds the master's kubeconfig."""
    kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    with update(str(kubeconfig)) as data:
        data["namespaces"].append("kubeedge")
        data["deployments"]["kubeedge/cloudcore"] = {"replicas": 1}
    return kubeconfig

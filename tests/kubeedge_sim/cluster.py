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
        },
    ],
    "namespaces": ["default", "kube-system"],
    "deployments": {},
    "secrets": {},
    "events": [],
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
    data: dict[str, Any] = json.loads(p.read_text() if p.exists() else json.dumps(DEFAULT))
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


def ensure_pod(kubeconfig: str) -> None:
    """The kubelet's part: a scheduled cloudcore Deployment gets a running pod process."""
    with update(kubeconfig) as data:
        deploy = data["deployments"].get("kubeedge/cloudcore")
        if deploy is None or not deploy["available"] or sim.alive(deploy.get("pid")):
            return
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


def stop_pod(data: dict[str, Any]) -> None:
    """Delete the pod (rollout or namespace deletion): its process ends."""
    deploy = data["deployments"].get("kubeedge/cloudcore") or {}
    pid = deploy.pop("pid", None)
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


def schedule(data: dict[str, Any], tolerations: list[dict[str, str]]) -> tuple[str | None, str]:
    """(node, "") or (None, the scheduler's event message)."""
    nodes = [n for n in data["nodes"] if "node-role.kubernetes.io/edge" not in n.get("labels", {})]
    for node in nodes:
        blocking = [
            t
            for t in node.get("taints", [])
            if t.get("effect") == "NoSchedule" and not tolerated(t, tolerations)
        ]
        if not blocking:
            return node["name"], ""
    total = len(data["nodes"])
    taint = next(
        (t for n in nodes for t in n.get("taints", []) if not tolerated(t, tolerations)), None
    )
    if taint is None:
        return (
            None,
            f"0/{total} nodes are available: {total} node(s) didn't match Pod's node affinity/selector.",
        )
    value = taint.get("value", "")
    return None, (
        f"0/{total} nodes are available: {len(nodes)} node(s) had taint "
        f"{{{taint['key']}: {value}}}, that the pod didn't tolerate."
    )


def start_cloudcore(data: dict[str, Any]) -> bool:
    """(Re)schedule cloudcore's pod; once it runs, cloudcore creates its CA and tokensecret."""
    import base64

    from tests.kubeedge_sim.pki import CloudcorePKI

    deploy = data["deployments"].get("kubeedge/cloudcore")
    if deploy is None:
        return False
    node, why = schedule(data, deploy["tolerations"])
    deploy.update(node=node, phase="Running" if node else "Pending", available=node is not None)
    if node is None:
        data["events"].append(
            {
                "namespace": "kubeedge",
                "object": "pod/cloudcore",
                "reason": "FailedScheduling",
                "type": "Warning",
                "message": why,
            }
        )
        return False
    image = deploy["image"]
    if image.rpartition(":")[2] not in data.get("registry_tags", [image.rpartition(":")[2]]):
        # the kubelet's (dockershim's) words for a tag that was never published
        deploy.update(phase="Pending", available=False)
        for reason, message in (
            (
                "Failed",
                f'Failed to pull image "{image}": rpc error: code = Unknown desc = Error response from '
                f"daemon: manifest for {image} not found: manifest unknown: manifest unknown",
            ),
            ("BackOff", f'Back-off pulling image "{image}"'),
        ):
            data["events"].append(
                {
                    "namespace": "kubeedge",
                    "object": "pod/cloudcore",
                    "reason": reason,
                    "type": "Warning",
                    "message": message,
                }
            )
        return False
    # cloud/pkg/cloudhub/servers/httpserver/server.go@v1.13.0, PrepareAllCerts(): the CA
    # from casecret, else made and saved; then the server certificate from cloudcoresecret —
    #   cloudSecret, err := GetSecret(CloudCoreSecretName, constants.SystemNamespace)
    #   if err != nil { ... certDER, keyDER, err = SignCerts(); ... CreateCloudCoreSecret(...) }
    #   else { certDER = cloudSecret.Data[CloudCoreCertName] ... }
    # so the certificate keeps the addresses of the first start through restarts and
    # upgrades, until someone deletes that secret. The token is made anew at each start.
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
    data["secrets"]["kubeedge/tokensecret"] = {"tokendata": b64(pki.token().encode()).decode()}
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

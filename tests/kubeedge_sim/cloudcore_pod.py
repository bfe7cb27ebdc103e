"""The cloudcore pod of the simulated cluster, as a process: started when the scheduler
places the Deployment (cluster.reconcile), named `cloudcore` (hostNetwork: `pidof
cloudcore` on the master sees it, as keadm init's preflight does), serving cloudhub's
ports 10000 and 10002 on every advertise address with the CA from casecret. An edge
node becomes a Node when it connects to cloudhub's websocket (10000), as edgecontroller
creates it — not when it gets its certificate.

Run: python -m tests.kubeedge_sim.cloudcore_pod KUBECONFIG
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import signal
import sys
import time

from tests.kubeedge_sim import cluster
from tests.kubeedge_sim.cloudcore import CloudcoreSim
from tests.kubeedge_sim.pki import CloudcorePKI

WEBSOCKET_PORT, CERT_PORT = 10000, 10002
PR_SET_NAME = 15


class ClusterNodes(set[str]):
    """The cluster's Nodes as cloudhub's GET /node/<name> sees them (v1.20 on): read from
    the simulated API server at each question, so `kubectl delete node` is seen."""

    def __init__(self, kubeconfig: str) -> None:
        super().__init__()
        self.kubeconfig = kubeconfig

    def __contains__(self, name: object) -> bool:
        return any(n["name"] == name for n in cluster.load(self.kubeconfig)["nodes"])

    def add(self, name: str) -> None:
        pass  # register() below creates the Node, with what edged reports


def main(argv: list[str]) -> int:
    kubeconfig = argv[0]
    ctypes.CDLL(None).prctl(PR_SET_NAME, b"cloudcore", 0, 0, 0)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    data = cluster.load(kubeconfig)
    deploy = data["deployments"]["kubeedge/cloudcore"]
    ca = data["secrets"]["kubeedge/casecret"]
    server = data["secrets"]["kubeedge/cloudcoresecret"]
    advertise: list[str] = deploy["advertiseAddress"] or ["127.0.0.1"]
    # The certificate from cloudcoresecret, not one for today's addresses (cluster.py).
    pki = CloudcorePKI.from_secrets(
        base64.b64decode(ca["cadata"]), base64.b64decode(ca["cakeydata"]),
        base64.b64decode(server["stream.crt"]), base64.b64decode(server["stream.key"]),
    )  # fmt: skip

    kubelet_versions: dict[str, str] = {}  # shared by the servers of every address

    def register(node: str) -> None:
        with cluster.update(kubeconfig) as state:
            if not any(n["name"] == node for n in state["nodes"]):
                state["nodes"].append({"name": node, "ip": "", "taints": [], "labels": {
                    "node-role.kubernetes.io/edge": "", "node-role.kubernetes.io/agent": ""}})  # fmt: skip
            for n in state["nodes"]:
                if n["name"] == node and kubelet_versions.get(node):
                    n["kubeletVersion"] = kubelet_versions[node]

    with contextlib.ExitStack() as stack:
        for address in advertise:
            try:
                stack.enter_context(CloudcoreSim(pki, host=address, websocket_port=WEBSOCKET_PORT,
                                                 cert_port=CERT_PORT, on_registered=register,
                                                 version=deploy["image"].rpartition(":")[2],
                                                 nodes=ClusterNodes(kubeconfig),
                                                 kubelet_versions=kubelet_versions))  # fmt: skip
            except OSError as exc:
                # cloudhub's listener fails and cloudcore exits: the kubelet restarts it
                # (CrashLoopBackOff); `kubectl logs --previous` shows this line.
                print(f"F{time.strftime('%m%d %H:%M:%S')} server.go:77] listen "
                      f"tcp {address}:{WEBSOCKET_PORT}: bind: {(exc.strerror or str(exc)).lower()}", flush=True)  # fmt: skip
                with cluster.update(kubeconfig) as state:
                    state["deployments"]["kubeedge/cloudcore"]["exit"] = {
                        "exitCode": 1,
                        "reason": "Error",
                    }
                return 1
        print(f"cloudcore: serving on {', '.join(advertise)}", flush=True)
        with cluster.update(kubeconfig) as state:
            state["deployments"]["kubeedge/cloudcore"]["ready_pid"] = os.getpid()
            delay = float(state["token_delay_s"])
        # cloudhub's token manager creates tokensecret a moment after the start, and
        # makes a new token at every start (httpserver/signcerts.go@v1.13.0): a token
        # asked for as soon as the Deployment is Available may not be there yet.
        if not signal.sigtimedwait({signal.SIGTERM, signal.SIGINT}, delay):
            with cluster.update(kubeconfig) as state:
                state["secrets"]["kubeedge/tokensecret"] = {
                    "tokendata": base64.b64encode(pki.token().encode()).decode()
                }
            signal.sigwait({signal.SIGTERM, signal.SIGINT})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

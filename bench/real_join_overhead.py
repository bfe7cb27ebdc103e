"""kedge's join overhead against a bare `keadm join`, on the real binaries, side by side.

In one sandbox (tests/harness/sandbox.py: a real etcd, kube-apiserver and cloudcore, a
real containerd edge board), each round joins the same board twice, from a clean board
to Node Ready: once with the bare `keadm join` (the flags kedge would pass, chosen by
hand) and once with `kedge-agent join` (its preflight, keadm, its verification); between
them `kedge-agent reset` cleans the board. The node names differ (v1.20+ keadm refuses a
name the cluster already has). The ratio is kedge's time over keadm's, per round and as
the median.

    .venv/bin/python -m bench.real_join_overhead [--version v1.23.1] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tests.harness.control_plane import ControlPlane
from tests.harness.real_kubeedge import HUB, real_kubeedge
from tests.harness.wait import wait_for


def _ready_after(plane: ControlPlane, node: str, began: float) -> float:
    wait_for(lambda: plane.node_ready(node), timeout=180, what=f"Node {node} Ready", interval=0.2)
    return time.monotonic() - began


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", default="v1.23.1")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    hub = HUB
    ratios: list[float] = []
    with tempfile.TemporaryDirectory(prefix="kedge-join-bench-") as tmp:
        work = Path(tmp)
        with real_kubeedge(work, args.version) as kube:
            plane, edge = kube.plane, kube.edge
            token = kube.cloudcore.token()
            for n in range(args.rounds):
                bare_node, kedge_node = f"bare-{n}", f"kedge-{n}"
                began = time.monotonic()
                rc, out, _ = edge.keadm_join(hub, token, bare_node)
                if rc != 0:
                    raise SystemExit(f"bare keadm join failed:\n{out}")
                bare = _ready_after(plane, bare_node, began)
                edge.configure_agent(hub, token, bare_node)
                rc, report, _ = edge.kedge("reset", "--yes")
                if rc != 0:
                    raise SystemExit(f"kedge-agent reset failed: {report}")
                edge.configure_agent(hub, token, kedge_node)
                began = time.monotonic()
                rc, report, _ = edge.kedge("join", "--yes")
                if rc != 0:
                    raise SystemExit(f"kedge-agent join failed: {report['summary']}")
                kedged = _ready_after(plane, kedge_node, began)
                rc, report, _ = edge.kedge("reset", "--yes")
                if rc != 0:
                    raise SystemExit(f"kedge-agent reset failed: {report}")
                ratios.append(kedged / bare)
                print(
                    f"round {n + 1}: bare keadm join → Ready {bare:.1f} s; "
                    f"kedge-agent join → Ready {kedged:.1f} s; ratio {kedged / bare:.2f}",
                    flush=True,
                )
    print(f"{args.version}: kedge/keadm median ratio {statistics.median(ratios):.2f} "
          f"over {len(ratios)} rounds")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The field guide's pitfalls reproduced against the real v1.23.1 cloudcore, keadm and
edgecore (issue 26, item 2), one sandbox for all of them: each is set up for real,
kedge's check names it before the join, and where the real keadm has its own words for
it, kedge's diagnosis recognises them; the node-exists refusal is then lifted through
kedge-cloud-api (`remove`), and its `verify` runs a pod on the board (issue 26, item 2).
The clock before cloudcore's certificate is reproduced by moving the certificate
instead of the clock (the clock is machine-wide here); a kernel without the memory
cgroup cannot be (so are the kernel's cgroups): it is held to the fixtures."""

from __future__ import annotations

import base64
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.diagnose import recognise
from tests.harness.control_plane import Cloudcore, ControlPlane, future_cloudcore_secrets
from tests.harness.real_binaries import release
from tests.harness.real_cloud_api import scheduler_stand_in, start_cloud_api
from tests.harness.real_edge import ENDPOINT, PROBE_IMAGE, RealEdge, probe_image
from tests.harness.real_kubeedge import real_kubeedge
from tests.harness.sandbox import ADDRESS, sandbox
from tests.harness.wait import wait_for

HUB = f"{ADDRESS}:10000"


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_the_pitfalls_are_named_before_the_join_on_real_kubeedge(tmp_path: Path) -> None:
    with real_kubeedge(tmp_path, "v1.23.1", workloads=True) as kube:
        box, plane, cloudcore, edge = kube.box, kube.plane, kube.cloudcore, kube.edge
        token = cloudcore.token()
        ca_hash = token.split(".", 1)[0]

        clean = edge.kedge_check(HUB, token, "edge-1")
        assert {k: v["status"] for k, v in clean.items() if v["status"] == "fail"} == {}

        # A kubelet already running (the field guide's k3s/kubeadm leftover).
        kubelet = tmp_path / "kubelet"
        shutil.copy("/bin/sleep", kubelet)
        box.spawn([str(kubelet), "300"], tmp_path / "kubelet.log")
        wait_for(lambda: box.run("pidof", "kubelet").returncode == 0, timeout=10, what="kubelet")
        found = edge.kedge_check(HUB, token, "edge-1")["conflicts"]
        assert found["status"] == "fail"
        assert found["summary"].startswith("process kubelet (pid ")
        box.check("pkill", "-x", "kubelet")

        # A port edgecore needs, taken.
        listen = "import socket, time; s = socket.socket(); s.bind(('0.0.0.0', 10350)); s.listen(); time.sleep(300)"
        box.spawn(["python3", "-c", listen], tmp_path / "listener.log")
        wait_for(
            lambda: ":10350 " in box.check("ss", "-ltn"), timeout=10, what="a listener on 10350"
        )
        ports = edge.kedge_check(HUB, token, "edge-1")["ports"]
        assert ports["status"] == "fail"
        assert "10350 (edgecore) is taken by python3" in ports["summary"]
        box.check("pkill", "-f", "s.bind")

        # A wrong advertise address: cloudcore's certificate names ADDRESS only.
        wrong = edge.kedge_check("127.0.0.1:10000", token, "edge-1")["cloudcore"]
        assert wrong["status"] == "fail"
        assert wrong["summary"].startswith("edgecore would reject cloudcore's certificate")
        assert "127.0.0.1" in wrong["summary"]

        # A token from another cloudcore, and an expired one.
        other = "0" * 64 + token[len(ca_hash) :]
        another = edge.kedge_check(HUB, other, "edge-1")["cloudcore"]
        assert another["status"] == "fail"
        assert "the token is for another cloudcore" in another["summary"]
        expired = ".".join(
            [ca_hash, _b64({"alg": "HS256", "typ": "JWT"}), _b64({"exp": 1700000000}), "x"]
        )
        old = edge.kedge_check(HUB, expired, "edge-1")["cloudcore"]
        assert old["status"] == "fail"
        assert "the token expired at 2023-11-14 22:13Z" in old["summary"]

        # Leftovers of an earlier (bare) join.
        rc, out, _ = edge.keadm_join(HUB, token, "edge-1")
        assert rc == 0, out
        plane.wait_ready("edge-1")
        left = edge.kedge_check(HUB, token, "edge-1")["leftovers"]
        assert left["status"] == "fail"
        rc, reset, _ = edge.kedge("reset", "--yes")
        assert rc == 0, reset

        # The v1.20+ node-exists refusal: the Node is still in the cluster.
        taken = edge.kedge_check(HUB, token, "edge-1")["cloudcore"]
        assert taken["status"] == "fail"
        assert "cloudcore answers HTTP 200 for node edge-1" in taken["summary"]
        rc, out, _ = edge.keadm_join(HUB, token, "edge-1", timeout=120)
        assert rc != 0
        assert [c.id for c in recognise(out)] == ["node-already-registered"], out
        assert "kedge-cloud-api remove edge-1" in taken["remedy"], taken

        # The way out, through kedge-cloud-api beside the real API server: remove deletes
        # the Node; the name is free and kedge joins the board.
        api = start_cloud_api(box, plane, tmp_path / "api")
        rc, removed = api.cli("remove", "edge-1", "--yes")
        assert rc == 0, removed
        assert removed["kubernetes_node_deleted"] is True, removed
        assert plane.get("/api/v1/nodes/edge-1") is None
        free = edge.kedge_check(HUB, token, "edge-1")["cloudcore"]
        assert free["status"] == "pass", free
        rc, report, _ = edge.kedge("join", "--yes")
        assert rc == 0, report
        plane.wait_ready("edge-1")

        # verify runs its pod there: an image made here, in the board's containerd; the
        # real controller manager makes the Deployment's pod, a stand-in binds it as
        # kube-scheduler (not among the binaries) would.
        edge.import_image("probe", probe_image())
        with scheduler_stand_in(plane):
            rc, answer = api.cli("verify", "--image", PROBE_IMAGE, "--timeout", "120")
        assert rc == 0, json.dumps(answer, indent=1)
        assert answer["result"]["nodes"] == {"edge-1": {"result": "running", "reason": ""}}
        assert plane.get("/apis/apps/v1/namespaces/default/deployments")["items"] == []


def test_a_clock_behind_cloudcores_certificate_is_named_in_the_real_words(tmp_path: Path) -> None:
    """The field guide's clock pitfall for real: cloudcore serves a certificate valid only
    from two days ahead (the board's clock is then two days behind it). kedge's clock
    check names it before the join; the bare keadm join's edgecore then fails to fetch
    its certificate in words kedge's diagnosis recognises."""
    ahead = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    with sandbox(tmp_path / "box") as box:
        plane = ControlPlane(box, tmp_path / "plane").start()
        plane.install_kubeedge_resources("v1.23.1")
        future_cloudcore_secrets(plane, ahead)
        cloudcore = Cloudcore(box, plane, "v1.23.1", tmp_path / "cloudcore").start()
        edge = RealEdge(box, tmp_path / "edge", "v1.23.1").start()
        token = cloudcore.token()

        clock = edge.kedge_check(HUB, token, "edge-1")["clock"]
        assert clock["status"] == "fail", clock
        assert "is before cloudcore's certificate" in clock["summary"], clock
        assert clock["details"]["cloudcore_cert_not_before"] == ahead.isoformat()

        # keadm waits 300 s for certificates that never come: its edgecore's words suffice.
        keadm = str(release("v1.23.1")["keadm"])
        box.spawn(
            [
                keadm,
                "join",
                f"--cloudcore-ipport={HUB}",
                f"--token={token}",
                "--kubeedge-version=v1.23.1",
                "--edgenode-name=edge-1",
                f"--remote-runtime-endpoint={ENDPOINT}",
                "--cgroupdriver=cgroupfs",
            ],
            tmp_path / "keadm.log",
        )
        log = box.work / "root/var/log/kubeedge/edgecore.log"
        words = "x509: certificate has expired or is not yet valid"
        wait_for(
            lambda: log.exists() and words in log.read_text(),
            timeout=120,
            what="edgecore to refuse cloudcore's certificate",
        )
        assert "clock-x509" in [c.id for c in recognise(log.read_text())]

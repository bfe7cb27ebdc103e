"""Real KubeEdge in the loop (issue 26), the control plane: Debian's etcd, the real
kube-apiserver and a real cloudcore of each release in a private sandbox
(tests/harness/sandbox.py, control_plane.py). cloudcore makes its CA, its certificate
and the join token itself; kedge reads that token as boards will be handed it."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from kedge.token import parse_token
from tests.harness.control_plane import Cloudcore, ControlPlane
from tests.harness.real_binaries import RELEASES
from tests.harness.sandbox import sandbox


@pytest.mark.parametrize("version", RELEASES)
def test_a_real_cloudcore_issues_the_token_kedge_reads(tmp_path: Path, version: str) -> None:
    with sandbox(tmp_path / "box") as box:
        plane = ControlPlane(box, tmp_path / "plane").start()
        plane.install_kubeedge_resources(version)
        cloudcore = Cloudcore(box, plane, version, tmp_path / "cloudcore").start()
        token = cloudcore.token()  # keadm gettoken, the real one
        stored = plane.get("/api/v1/namespaces/kubeedge/secrets/tokensecret")
        assert base64.b64decode(stored["data"]["tokendata"]).decode() == token
        parsed = parse_token(token)  # what kedge checks before a board joins with it
        assert parsed.expires_at is not None
        for secret in ("casecret", "cloudcoresecret"):
            assert plane.get(f"/api/v1/namespaces/kubeedge/secrets/{secret}") is not None
        listening = box.check("ss", "-ltn")
        assert ":10000 " in listening
        assert ":10002 " in listening

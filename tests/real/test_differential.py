"""The simulators held to the real binaries (issue 26, item 3): the same situation given
to the real keadm or edgecore (in the sandbox) and to its simulator (tests/kubeedge_sim)
must end the same way, in the same words where kedge matches words, and leave the same
files where kedge reads them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.harness.real_binaries import RELEASES, release
from tests.harness.real_edge import ENDPOINT
from tests.harness.real_kubeedge import real_kubeedge
from tests.harness.sandbox import ADDRESS, sandbox
from tests.harness.wait import wait_for
from tests.kubeedge_sim import keadm_cri

REPO = Path(__file__).resolve().parents[2]


def _fatal(text: str) -> str:
    """The message of klog's first error or fatal line (after "] ")."""
    found = re.search(r"^[EF]\d{4} [^\]]*\] (.*)$", text, re.M)
    assert found is not None, text
    return found[1]


@pytest.mark.parametrize("version", RELEASES)
def test_edgecore_refuses_a_running_kubelet_in_the_real_words(tmp_path: Path, version: str) -> None:
    """kedge's diagnosis (kubelet-running) reads this line; the simulator must say it as
    the release does (v1.19 changed the words and dropped kube-proxy)."""
    with sandbox(tmp_path / "box") as box:
        edgecore = str(release(version)["edgecore"])
        config = box.work / "root/etc/kubeedge/config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "edgecore.yaml").write_text(box.check(edgecore, "--defaultconfig"))
        kubelet = tmp_path / "kubelet"
        shutil.copy("/bin/sleep", kubelet)
        box.spawn([str(kubelet), "300"], tmp_path / "kubelet.log")
        wait_for(lambda: box.run("pidof", "kubelet").returncode == 0, timeout=10, what="kubelet")
        real = box.run(edgecore, timeout=60)
        # The simulator sees the same process: process names are machine-wide here.
        simulated = subprocess.run(
            [sys.executable, "-c", "import sys; from tests.kubeedge_sim.edgecore import main; "
             f"sys.exit(main([], {str(tmp_path / 'board')!r}, {version!r}))"],
            cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert real.returncode != 0
    assert simulated.returncode != 0
    said = _fatal(real.stdout + real.stderr)
    assert said.startswith("failed to check the running environment: kubelet should not")
    assert _fatal(simulated.stdout + simulated.stderr) == said


def _at(doc: dict[str, Any], path: str) -> Any:
    for key in path.split("."):
        doc = doc.get(key, {}) if isinstance(doc, dict) else {}
    return doc if doc != {} else None


# What kedge and edgecore read from the edgecore.yaml keadm writes (verification, the
# daemon, diagnosis, upgrade).
READ_BY_KEDGE = (
    "modules.edgeHub.httpServer", "modules.edgeHub.websocket.server",
    "modules.edgeHub.tlsCaFile", "modules.edgeHub.tlsCertFile", "modules.edgeHub.tlsPrivateKeyFile",
    "modules.edged.hostnameOverride", "modules.edged.rootDirectory",
    "modules.edged.tailoredKubeletConfig.cgroupDriver",
    "modules.edged.tailoredKubeletConfig.containerRuntimeEndpoint",
    "modules.edged.tailoredKubeletConfig.imageServiceEndpoint",
    "modules.eventBus.enable", "modules.eventBus.mqttMode", "modules.eventBus.mqttServerExternal",
    "database.dataSource",
)  # fmt: skip


def test_the_simulated_v1_23_1_join_writes_the_edgecore_yaml_the_real_keadm_writes(
    tmp_path: Path,
) -> None:
    with real_kubeedge(tmp_path, "v1.23.1") as kube:
        box, cloudcore, edge = kube.box, kube.cloudcore, kube.edge
        token = cloudcore.token()
        rc, out, _ = edge.keadm_join(f"{ADDRESS}:10000", token, "edge-1")
        assert rc == 0, out
        real = yaml.safe_load((box.work / "root/etc/kubeedge/config/edgecore.yaml").read_text())
    simulated = yaml.safe_load(keadm_cri.EDGECORE_YAML.format(
        version="v1.23.1", host=ADDRESS, certport="10002", token=json.dumps(token),
        cloudcore=f"{ADDRESS}:10000", node="edge-1", labels="{}", cgroupdriver="cgroupfs",
        endpoint=ENDPOINT,
    ))  # fmt: skip
    differ = {
        path: (_at(simulated, path), _at(real, path))
        for path in READ_BY_KEDGE
        if _at(simulated, path) != _at(real, path)
    }
    assert differ == {}, "simulator vs real keadm (path: (simulated, real))"
    # Once it holds its certificates edgecore blanks the token, as the simulator does.
    assert _at(real, "modules.edgeHub.token") in (None, "")

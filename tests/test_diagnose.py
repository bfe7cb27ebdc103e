"""The texts kedge recognises, in each release's words (issue 26, items 4 and 5 (3, 7)):
v1.23.1 words some failures differently from v1.13.0, and keadm's "EdgeCore is already
running" has a cause reset cannot fix. The v1.23.1 texts are the real source's format
strings, filled as the real code fills them."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.diagnose import recognise
from agent.join import _misread_first_step
from kedge.host import Host


@pytest.mark.parametrize(
    ("text", "cause", "summary"),
    [
        # edge/cmd/edgecore/app/server.go@v1.13.0 and @v1.23.1
        ("kubelet should not running on edge node", "kubelet-running",
         "a kubelet process runs on the board, and edgecore will not start beside it"),
        ("kube-proxy should not running on edge node", "kubelet-running",
         "a kube-proxy process runs on the board, and edgecore will not start beside it"),
        ("kubelet should not be running on edge node when starting edgecore", "kubelet-running",
         "a kubelet process runs on the board, and edgecore will not start beside it"),
        # keadm v1.13.0 util (containerd not there) and v1.23.1 pkg/image/image_runtime.go
        # wrapping vendor/k8s.io/cri-client/pkg/remote_image.go
        ('unable to determine image API version: rpc error: code = Unavailable desc = connection '
         'error: desc = "transport: Error while dialing dial unix /run/containerd/containerd.sock: '
         'connect: no such file or directory"', "cri-unavailable",
         "no container runtime answers on /run/containerd/containerd.sock"),
        ("edge node join failed: failed to new remote image service, err: validate service "
         "connection: validate CRI v1 image API for endpoint \"unix:///run/containerd/containerd.sock\": "
         'rpc error: code = Unavailable desc = connection error: desc = "transport: Error while '
         'dialing: dial unix /run/containerd/containerd.sock: connect: no such file or directory"',
         "cri-unavailable", "no container runtime answers on /run/containerd/containerd.sock"),
        ("the management directory /etc/kubeedge/ is not clean, please remove it first",
         "not-clean", "an earlier join left /etc/kubeedge behind"),
        # keadm's certificate wait, v1.13.0 and v1.23.1 (cobra's "Error: " line)
        ("Error: edge node join failed: timed out waiting for the condition", "cert-timeout",
         "edgecore never obtained its certificates within keadm's wait"),
        ("Error: timed out waiting for the condition", "cert-timeout",
         "edgecore never obtained its certificates within keadm's wait"),
        # the real v1.23.1 edgecore's journal in a container booted without /dev/kmsg
        ("F1207 23:19:44.810020     291 edged.go:152] Start edged failed, err: failed to run "
         "Kubelet: failed to create kubelet: open /dev/kmsg: no such file or directory", "no-kmsg",
         "edgecore's kubelet needs /dev/kmsg, which this board does not have (a container "
         "started without it)"),
    ],
)  # fmt: skip
def test_each_releases_words_are_recognised(text: str, cause: str, summary: str) -> None:
    (found,) = recognise(text)
    assert (found.id, found.summary) == (cause, summary)


def test_a_healthy_edgecores_passing_timeouts_are_not_a_cause() -> None:
    """The real v1.23.1 edgecore's first seconds, as its log has them."""
    started = (
        "E1207 23:32:10.913283     444 csi_plugin.go:308] Failed to initialize CSINode: error "
        "updating CSINode annotation: timed out waiting for the condition; caused by: node "
        "length from meta db is 0"
    )
    assert recognise(started) == []


STEP_ONE = "Error: EdgeCore is already running on this node, please run reset to clean up first"


def test_already_running_without_pidof_is_the_missing_tool_not_a_leftover(tmp_path: Path) -> None:
    """keadm runs `bash -c "pidof edgecore"` and reads a failure as "running" (seen on the
    real v1.13.0 and v1.23.1 keadm): with pidof missing and no edgecore, the cause is the
    tool; "reset and join again" would loop."""
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "usr/bin/bash").write_text("#!/bin/sh\n")
    (tmp_path / "usr/bin/bash").chmod(0o755)
    host = Host(tmp_path, search_path=["/usr/bin"])
    (cause,) = _misread_first_step(host, recognise(STEP_ONE))
    assert cause.id == "join-tools-missing"
    assert "because pidof is missing" in cause.summary
    assert "apt install bash procps" in cause.remedy
    (tmp_path / "usr/bin/pidof").write_text("#!/bin/sh\n")
    (tmp_path / "usr/bin/pidof").chmod(0o755)
    (kept,) = _misread_first_step(host, recognise(STEP_ONE))
    assert kept.id == "edgecore-running"
    assert "kedge-agent reset --yes" in kept.remedy


@pytest.mark.parametrize(
    ("error", "cause"),
    [("rpc error: code = DeadlineExceeded desc = context deadline exceeded", "copy-timeout"),
     ("rpc error: code = Unknown desc = failed to exec in container: cp: write error: No space left on device",
      "copy-failed")],
)  # fmt: skip
def test_the_copy_steps_failures_are_named(error: str, cause: str) -> None:
    """Issue 26, item 5 (8): v1.23.1's copy step runs `cp` through ExecSync with a 30 s
    limit (pkg/containers/container_runtime.go CopyResources), worded as the real code
    words it."""
    text = (
        "Error: edge node join failed: copy resources failed: failed to exec copy cmd, "
        f"err: {error}, stderr: , stdout: "
    )
    (found,) = recognise(text)
    assert found.id == cause

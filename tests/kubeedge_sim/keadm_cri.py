"""keadm join and upgrade edge from v1.16 on: the CRI path (docs/kubeedge-versions.md).

The shape is keadm/cmd/keadm/app/cmd/edge/join.go and join_others.go at v1.23.1, with the
flags each release has. Images are pulled from, and checked in, a real containerd through
the CRI (tests/harness/containerd.py). What cannot run here is the copy step's pod: the
simulator asks containerd what the pod would need (its sandbox image, runc's cgroup
mode, the image's architecture) and fails the way RunPodSandbox or StartContainer would.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import secrets
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from kedge.cri import IMAGES, RUNTIME, CriClient, CriError, field, fields
from kedge.names import version_tuple
from tests.kubeedge_sim import klog, sim, systemctl
from tests.kubeedge_sim.cobra import Flag, parse

BOOTSTRAP = "etc/kubeedge/bootstrap-edgecore.conf"
CONFIG = "etc/kubeedge/config/edgecore.yaml"
EDGECORE = "usr/local/bin/edgecore"
# keadm/cmd/keadm/app/cmd/util/extsystem/simple.service@v1.23.1, no environment given;
# held to the file the real keadm writes by tests/real/test_real_systemd_board.py.
# KillMode=process: stopping the unit signals edgecore alone, not what it started.
UNIT = """[Unit]
Description=edgecore.service

[Service]
Type=simple
ExecStart=/usr/local/bin/edgecore
Restart=always
RestartSec=10
Environment=
KillMode=process

[Install]
WantedBy=multi-user.target
"""
# The parts of v1alpha2.NewDefaultEdgeCoreConfig() that edgecore and kedge read, with
# the values createEdgeConfigFiles() sets (join_others.go@v1.23.1 lines 103-186); held to
# the file the real keadm writes by tests/real/test_differential.py (the event bus is on,
# its broker external at 127.0.0.1:1883: edgecore retries it every 5 s without one).
EDGECORE_YAML = """apiVersion: edgecore.config.kubeedge.io/v1alpha2
kind: EdgeCore
edgeCoreVersion: {version}
database:
  dataSource: /var/lib/kubeedge/edgecore.db
modules:
  edgeHub:
    enable: true
    heartbeat: 15
    httpServer: https://{host}:{certport}
    tlsCaFile: /etc/kubeedge/ca/rootCA.crt
    tlsCertFile: /etc/kubeedge/certs/server.crt
    tlsPrivateKeyFile: /etc/kubeedge/certs/server.key
    token: {token}
    websocket:
      enable: true
      server: {cloudcore}
  edged:
    hostnameOverride: {node}
    nodeLabels: {labels}
    rootDirectory: /var/lib/kubelet
    tailoredKubeletConfig:
      cgroupDriver: {cgroupdriver}
      containerRuntimeEndpoint: {endpoint}
      imageServiceEndpoint: {endpoint}
  eventBus:
    enable: true
    mqttMode: 2
    mqttServerExternal: tcp://127.0.0.1:1883
"""


def fail(msg: str) -> int:
    """keadm/cmd/keadm/keadm.go@v1.23.1 only exits 1: cobra's "Error: <err>" on stderr is
    all (v1.13's main also printed "execute keadm command failed:" on stdout)."""
    sys.stderr.write(f"Error: {msg}\n")
    return 1


def join_flags(minor: tuple[int, int]) -> list[Flag]:
    """AddJoinOtherFlags at the release: --with-mqtt until v1.20 (deprecated from v1.16),
    --set from v1.18, --pre-run/--post-run from v1.20; --runtimetype is gone (v1.16)."""
    flags = [
        Flag("kubeedge-version"), Flag("cgroupdriver", None, "cgroupfs"),
        Flag("certPath", None, "/etc/kubeedge/certs"), Flag("cloudcore-ipport", "e"),
        Flag("edgenode-name", "i"),
        Flag("remote-runtime-endpoint", "p", "unix:///run/containerd/containerd.sock"),
        Flag("token", "t"), Flag("certport", "s"), Flag("tarballpath"), Flag("labels", "l"),
        Flag("image-repository"), Flag("hub-protocol", None, "websocket"),
    ]  # fmt: skip
    if minor <= (1, 20):
        flags.append(Flag("with-mqtt", None, False, "bool"))
    if minor >= (1, 18):
        flags.append(Flag("set", None, kind="stringArray"))
    if minor >= (1, 20):
        flags += [Flag("pre-run"), Flag("post-run")]
    return flags


def cri(endpoint: str, service: str, method: str, message: bytes, timeout: float = 10) -> bytes:
    """One CRI call; keadm's cri-client dials with a 10 s timeout (NewContainerRuntime)."""
    return asyncio.run(CriClient(endpoint, timeout).call(service, method, message, timeout=timeout))


def grpc_error(exc: CriError) -> str:
    """How grpc-go's status error reads in keadm's messages."""
    names = {2: "Unknown", 5: "NotFound", 12: "Unimplemented", 14: "Unavailable"}
    if exc.code is None:  # no answer at all: grpc-go's transport error
        return f'rpc error: code = Unavailable desc = connection error: desc = "transport: {exc}"'
    return f"rpc error: code = {names.get(exc.code, str(exc.code))} desc = {exc}"


def runtime_info(endpoint: str) -> dict[str, Any]:
    """containerd's verbose Status: the config the CRI plugin runs with (sandboxImage, the
    runc options) — what RunPodSandbox will use, whatever the file on disk says now."""
    answer = cri(endpoint, RUNTIME, "Status", b"\x08\x01")  # verbose: true
    for n, entry in fields(answer):
        if n == 2 and isinstance(entry, bytes):
            kv = {k: v for k, v in fields(entry) if isinstance(v, bytes)}
            if kv.get(1) == b"config":
                return dict(json.loads(kv.get(2, b"{}")))
    return {}


def image_status(endpoint: str, ref: str) -> dict[str, Any] | None:
    """ImageStatus(verbose): None when containerd does not have `ref`, else its info."""
    answer = cri(endpoint, IMAGES, "ImageStatus", field(1, field(1, ref)) + b"\x10\x01")
    image, info = None, {}
    for n, value in fields(answer):
        if n == 1 and isinstance(value, bytes):
            image = value
        elif n == 2 and isinstance(value, bytes):
            kv = {k: v for k, v in fields(value) if isinstance(v, bytes)}
            if kv.get(1) == b"info":
                info = json.loads(kv.get(2, b"{}"))
    return None if image is None else info


def docker_ref(ref: str) -> str:
    """ConvToCRIImage (pkg/image/image_runtime.go@v1.23.1): reference.ParseAnyReference."""
    name, _, tag = ref.rpartition(":")
    if "/" not in name:
        name = f"library/{name}"
    if "." not in name.split("/")[0] and ":" not in name.split("/")[0]:
        name = f"docker.io/{name}"
    return f"{name}:{tag}"


def pull_images(endpoint: str, images: list[str]) -> str | None:
    """RuntimeImpl.PullImages: ImageStatus, then PullImage when absent; the first error."""
    for image in images:
        try:
            if image_status(endpoint, docker_ref(image)) is None:
                cri(endpoint, IMAGES, "PullImage", field(1, field(1, docker_ref(image))), 600)
        except CriError as exc:
            return f"pull Images failed: failed to pull image {image}, err: {grpc_error(exc)}"
    return None


def copy_resources(
    root: Path, endpoint: str, image: str, cgroupdriver: str, dest: str = "/" + EDGECORE
) -> str | None:
    """ContainerRuntimeImpl.CopyResources (pkg/containers/container_runtime.go@v1.23.1): a
    privileged host-network sandbox, a container of `image` mounting /usr/local/bin at
    /tmp/usr/local/bin, `cp` through ExecSync. RunPodSandbox's errors come back unwrapped;
    the rest as "create container failed" / "start container failed"."""
    try:
        info = runtime_info(endpoint)
        sandbox_image = info.get("sandboxImage", "registry.k8s.io/pause:3.6")
        if image_status(endpoint, sandbox_image) is None:
            # containerd's RunPodSandbox pulls its pause image first (sandbox_run.go,
            # ensureImageExists): "failed to get sandbox image %q: %w".
            try:
                cri(endpoint, IMAGES, "PullImage", field(1, field(1, sandbox_image)), 120)
            except CriError as exc:
                if info.get("runtime") == "docker":  # cri-dockerd, ensureSandboxImageExists
                    return f'rpc error: code = Unknown desc = failed pulling image "{sandbox_image}": {exc}'
                return (
                    "rpc error: code = Unknown desc = failed to get sandbox image "
                    f'"{sandbox_image}": {exc}'
                )
        runc = info.get("containerd", {}).get("runtimes", {}).get("runc", {})
        systemd = bool((runc.get("options") or {}).get("SystemdCgroup", False))
        sandbox_id = secrets.token_hex(32)
        if systemd and cgroupdriver != "systemd":
            # keadm sets CgroupParent only for --cgroupdriver=systemd; without one,
            # containerd's default spec puts the sandbox at /<namespace>/<id>
            # (oci/spec.go populateDefaultUnixSpec: filepath.Join("/", ns, id)), which
            # runc's systemd driver refuses (libcontainer/specconv, CreateCgroupConfig).
            return (
                "rpc error: code = Unknown desc = failed to create containerd task: failed to create "
                "shim task: OCI runtime create failed: runc create failed: expected cgroupsPath to be "
                f'of format "slice:prefix:name" for systemd cgroups, got "/k8s.io/{sandbox_id}" '
                "instead: unknown"
            )
        built = image_status(endpoint, docker_ref(image))
    except CriError as exc:
        return grpc_error(exc)
    arch = ((built or {}).get("imageSpec") or {}).get("architecture")
    board = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(os.uname().machine)
    if arch is not None and arch != board:  # cri-dockerd's ImageStatus gives no image spec
        return (
            "start container failed: rpc error: code = Unknown desc = failed to create containerd "
            "task: failed to create shim task: OCI runtime create failed: runc create failed: "
            'unable to start container process: exec: "/bin/sh": exec format error: unknown'
        )
    write_edgecore(root / dest.lstrip("/"), root, image.rpartition(":")[2])
    return None


def write_edgecore(path: Path, root: Path, version: str) -> None:
    """The copied binary: a launcher for the simulated edgecore of the image's release."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
        "from tests.kubeedge_sim.edgecore import main\n"
        f"sys.exit(main(sys.argv[1:], root={str(root)!r}, version={version!r}))\n"
    )
    path.chmod(0o755)


def node_exists(opts: dict[str, Any], node: str) -> str | None:
    """isNodeExist (edge/join.go@v1.23.1 lines 186-223): GET https://<host>:<certport or
    10002>/node/<name>, certificate not verified; anything but 404 refuses."""
    host = opts["cloudcore-ipport"].rpartition(":")[0]
    url = f"https://{host}:{opts['certport'] or '10002'}/node/{node}"
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, context=insecure, timeout=30):
            pass
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f'error making request: Get "{url}": {reason}'
    return "node already exists or internal error occurred, cannot register again"


def cmd_join(args: list[str], root: Path, state: dict[str, Any]) -> int:
    minor = version_tuple(state["version"])[:2]
    opts = parse(join_flags(minor), args)
    if not opts["cloudcore-ipport"]:
        return fail('required flag(s) "cloudcore-ipport" not set')
    steps = klog.Steps()
    steps.printf("join.go:75", "Check KubeEdge edgecore process status")
    if sim.programs_running("edgecore"):
        return fail("EdgeCore is already running on this node, please run reset to clean up first")
    steps.printf("join.go:84", "Check if the management directory is clean")
    etc = root / "etc/kubeedge"
    if etc.is_dir() and any(etc.iterdir()):
        # constants.KubeEdgePath is "/etc/kubeedge/" (api/apis/common/constants@v1.23.1)
        return fail("the management directory /etc/kubeedge/ is not clean, please remove it first")
    hostname = (
        (root / "etc/hostname").read_text().strip() if (root / "etc/hostname").exists() else ""
    )
    node = opts["edgenode-name"] or hostname
    if minor >= (1, 20):
        steps.printf("join.go:97", "Check if the node name is valid")
        refused = node_exists(opts, node)
        if refused:
            return fail(refused)
    version = opts["kubeedge-version"] or state["version"]
    steps.printf("join_others.go:191", "Create the necessary directories")
    for d in ("etc/kubeedge", "etc/kubeedge/config", "var/log/kubeedge", "var/lib/kubeedge"):
        (root / d).mkdir(parents=True, exist_ok=True)
    endpoint = opts["remote-runtime-endpoint"]
    repo = opts["image-repository"]
    image = f"{repo or 'kubeedge'}/installation-package:{version}"
    try:
        CriClient(endpoint)  # "unix://" only, as kedge's client
        cri(endpoint, IMAGES, "ImageFsInfo", b"")
    except CriError as exc:
        # cri-client's NewRemoteImageService validates the connection first.
        return fail(
            "edge node join failed: failed to new remote image service, err: validate service "
            f'connection: validate CRI v1 image API for endpoint "{endpoint}": {grpc_error(exc)}'
        )
    steps.printf("join_others.go:246", "Pull Images")
    error = pull_images(endpoint, [image])
    if error:
        return fail(f"edge node join failed: {error}")
    steps.printf("join_others.go:252", "Copy resources from the image to the management directory")
    error = copy_resources(root, endpoint, image, opts["cgroupdriver"])
    if error:
        return fail(f"edge node join failed: copy resources failed: {error}")
    steps.printf("join_others.go:200", "Generate systemd service file")
    unit_dir = root / "etc/systemd/system"
    if not unit_dir.is_dir():
        return fail(
            "edge node join failed: failed to create edgecore systemd service, err: open "
            "/etc/systemd/system/edgecore.service: no such file or directory"
        )
    (unit_dir / "edgecore.service").write_text(UNIT)
    bootstrap = root / BOOTSTRAP
    bootstrap.write_text(opts["token"])
    bootstrap.chmod(0o640)
    try:  # join_others.go line 217: defer os.Remove(constants.BootstrapFile)
        if opts["cgroupdriver"] not in ("cgroupfs", "systemd"):
            return fail(
                "edge node join failed: create edge config file failed: unsupported CGroupDriver: "
                + opts["cgroupdriver"]
            )
        steps.printf("join_others.go:219", "Generate EdgeCore default configuration")
        host = opts["cloudcore-ipport"].rpartition(":")[0]
        labels = (
            dict(kv.split("=", 1) for kv in opts["labels"].split(",") if "=" in kv)
            if opts["labels"]
            else {}
        )
        (root / CONFIG).write_text(EDGECORE_YAML.format(
            version=version, host=host, certport=opts["certport"] or "10002",
            token=json.dumps(opts["token"]), cloudcore=opts["cloudcore-ipport"], node=node,
            labels=json.dumps(labels), cgroupdriver=opts["cgroupdriver"], endpoint=endpoint,
        ))  # fmt: skip
        steps.printf("join_others.go:224", "Run EdgeCore daemon")
        error = _run_edgecore(root)
        if error:
            return fail(f"edge node join failed: start edgecore failed: {error}")
        error = _wait_for_certs(root, state)
        if error:
            return fail(f"edge node join failed: {error}")
        steps.printf("join_others.go:242", "Install Complete!")
    finally:
        bootstrap.unlink(missing_ok=True)
    return 0


def _run_edgecore(root: Path) -> str | None:
    """runEdgeCore(): `sudo systemctl daemon-reload && sudo systemctl enable edgecore &&
    sudo systemctl start edgecore` through bash (execs.NewCommand)."""
    captured, errors = io.StringIO(), io.StringIO()
    for argv in (["daemon-reload"], ["enable", "edgecore"], ["start", "edgecore"]):
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(errors):
            rc = systemctl.main(argv, str(root))
        if rc != 0:
            command = "sudo systemctl daemon-reload && sudo systemctl enable edgecore && sudo systemctl start edgecore"
            # pkg/util/execs/exec.go@v1.23.1 Exec(): "failed to exec [<args joined>]", then for
            # a non-zero exit ", err: <stderr or else stdout>" (v1.13 quoted the command
            # and added the exit status).
            said = errors.getvalue() or captured.getvalue()
            return f"failed to exec [bash -c {command}], err: {said}"
    klog.line("I", "join_others.go:299", captured.getvalue().removesuffix("\n"))
    klog.line(
        "I",
        "join_others.go:300",
        "KubeEdge edgecore is running, For logs visit: journalctl -u edgecore.service -xe",
    )
    return None


def _wait_for_certs(root: Path, state: dict[str, Any]) -> str | None:
    """wait.Poll(10*time.Second, 300*time.Second, …) on the three TLS files (scaled)."""
    poll_s, deadline = float(state["poll_s"]), time.monotonic() + float(state["cert_wait_s"])
    wanted = [root / p for p in ("etc/kubeedge/ca/rootCA.crt", "etc/kubeedge/certs/server.crt",
                                 "etc/kubeedge/certs/server.key")]  # fmt: skip
    while True:
        time.sleep(poll_s)  # keadm's own poll interval, the thing modelled
        if all(p.exists() for p in wanted):
            return None
        if time.monotonic() >= deadline:
            return "timed out waiting for the condition"


UPGRADE_FLAGS = [
    Flag("config", None, "/etc/kubeedge/config/edgecore.yaml"), Flag("pre-run"), Flag("post-run"),
    Flag("toVersion", None, "v1.23.1"), Flag("image", None, "kubeedge/installation-package"),
    Flag("force", None, False, "bool"), Flag("image-digest"),
]  # fmt: skip


def cmd_upgrade_edge(args: list[str], root: Path, state: dict[str, Any]) -> int:
    """edge/upgrade.go@v1.23.1: pull <image>:<toVersion> through the CRI edgecore uses,
    copy edgecore out of it, stop edgecore, replace the binary, start it again."""
    opts = parse(UPGRADE_FLAGS, args)
    print(
        "If backup is required, please interrupt the current upgrade command and execute the backup command 'keadm backup edge'."
    )
    if not opts["force"]:
        sys.stdout.write("Are you sure you want to proceed? [y/N]: ")
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() != "y":
            klog.line("I", "upgrade.go:66", "aborted upgrade operation")
            return 0
    # edge/common.go@v1.23.1 preRun: idempotency.Occupy() creates /etc/kubeedge/
    # idempotency_record and refuses while it exists; release() removes it when the
    # command ends — a killed upgrade leaves it, and every later one is refused.
    record = root / "etc/kubeedge/idempotency_record"
    if record.exists():
        return fail("the mutually exclusive command is being executed")
    record.touch()
    try:
        return _upgrade(root, opts)
    finally:
        record.unlink(missing_ok=True)


def _upgrade(root: Path, opts: dict[str, Any]) -> int:
    try:
        cfg = (root / opts["config"].lstrip("/")).read_text()
    except FileNotFoundError:
        return fail(
            f"failed to parse the edgecore config file {opts['config']}, err: open {opts['config']}: no such file or directory"
        )
    from tests.kubeedge_sim.edgecore import value

    endpoint, driver = (
        value(cfg, "containerRuntimeEndpoint"),
        value(cfg, "cgroupDriver") or "cgroupfs",
    )
    image = f"{opts['image']}:{opts['toVersion']}"
    klog.line("I", "upgrade.go:117", f"Begin to download {opts['toVersion']} of edgecore")
    error = pull_images(endpoint, [image])
    if error:
        return fail(
            f"failed to get edgecore binary, err: failed to pull image {image}, err: {error}"
        )
    staged = f"/etc/kubeedge/upgrade/{opts['toVersion']}/edgecore"  # common.KubeEdgeUpgradePath
    error = copy_resources(root, endpoint, image, driver, dest=staged)
    if error:
        return fail(
            "failed to get edgecore binary, err: failed to copy edgecore from /usr/local/bin/edgecore "
            f"in the image {image} to host /etc/kubeedge/upgrade/{opts['toVersion']}/edgecore, err: {error}"
        )
    klog.line("I", "upgrade.go:126", "Upgrade process start ...")
    with contextlib.redirect_stdout(io.StringIO()):
        systemctl.main(["stop", "edgecore"], str(root))
    for pid in sim.programs_running("edgecore"):  # util.KillKubeEdgeBinary, after the stop
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    shutil.copyfile(root / staged.lstrip("/"), root / EDGECORE)  # files.FileCopy
    error = _run_edgecore(root)
    if error:
        return fail(f"failed to start edgecore, err: {error}")
    klog.line("I", "upgrade.go:141", "Upgrade process successful")
    shutil.rmtree(root / "etc/kubeedge/upgrade", ignore_errors=True)
    return 0

"""A stand-in for keadm v1.13.0 (a Go/cobra binary that cannot run here).

Installed into a fixture board as /usr/local/bin/keadm by tests.harness.board; state
below the board root in var/lib/kedge-sim/keadm.json: {"version", "platform",
"cert_wait_s"}. `join` and `reset` follow docs/kubeedge-1.13.md: the same flags and defaults
(--runtimetype remote, containerd's endpoint, cgroupfs), the two preflight checks, the
side effects in order, and the same error texts. Deviations, because nothing can run
here: the mqtt container is created but not started, edgecore is started through the
simulated systemctl, and the certificate wait is `cert_wait_s` (300 s in keadm).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path
from typing import Any

from kedge.names import version_tuple
from tests.harness.dockerd import api
from tests.kubeedge_sim import keadm_cloud, keadm_cri, klog, sim, systemctl
from tests.kubeedge_sim.cobra import CobraError, Flag, fail, parse

GIT_COMMITS = {"v1.13.0": "ee357a0d5e4b1c9e8a1c5c4f0d3c9b0b7a0d8e0f"}
COMMANDS = ("version", "join", "reset", "gettoken", "init", "debug", "upgrade")
JOIN_FLAGS = [
    Flag("cloudcore-ipport", "e"),
    Flag("edgenode-name", "i"),
    Flag("kubeedge-version"),
    Flag("token", "t"),
    Flag("runtimetype", "r", "remote"),
    Flag("remote-runtime-endpoint", "p", "unix:///run/containerd/containerd.sock"),
    Flag("cgroupdriver", None, "cgroupfs"),
    Flag("certport", "s"),
    Flag("labels", "l"),
    Flag("with-mqtt", None, True, "bool"),
    Flag("image-repository"),
    Flag("certPath", None, "/etc/kubeedge/certs"),
    Flag("tarballpath"),
]
RESET_FLAGS = [
    Flag("kube-config", None, "/root/.kube/config"),
    Flag("force", None, False, "bool"),
    Flag("runtimetype", None, "remote"),
    Flag("remote-runtime-endpoint"),
]
UNIT = """[Unit]
Description=edgecore.service

[Service]
Type=simple
ExecStart=/usr/local/bin/edgecore
Restart=always
RestartSec=10

[Install]
WantedBy=multi-user.target
"""
EDGECORE_YAML = """apiVersion: edgecore.config.kubeedge.io/v1alpha2
kind: EdgeCore
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
    containerRuntime: {runtime}
    hostnameOverride: {node}
    nodeLabels: {labels}
    podSandboxImage: kubeedge/pause:3.6
    remoteImageEndpoint: {endpoint}
    remoteRuntimeEndpoint: {endpoint}
    rootDirectory: /var/lib/edged
    tailoredKubeletConfig:
      cgroupDriver: {cgroupdriver}
  eventBus:
    enable: true
    mqttMode: 2
    mqttServerExternal: tcp://127.0.0.1:1883
"""
DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class JoinError(Exception):
    pass


def _state(root: Path) -> dict[str, Any]:
    return {
        "version": "v1.13.0",
        "platform": "linux/amd64",
        "cert_wait_s": 300,
        "poll_s": 10,
        **sim.load(root, "keadm"),
    }


def on_path(root: Path, program: str) -> Path | None:
    """exec.LookPath on the board: keadm's PATH, under the board's root."""
    for d in ("usr/local/sbin", "usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin"):
        if (root / d / program).exists():
            return root / d / program
    return None


def real_systemd(root: Path) -> bool:
    """This board is the whole system and systemd is its manager (sd_booted(3))."""
    return str(root) == "/" and Path("/run/systemd/system").is_dir()


def docker_socket() -> str:
    return os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")


def _images(version: str, repo: str) -> list[str]:
    refs = [
        f"kubeedge/installation-package:{version}",
        "eclipse-mosquitto:1.6.15",
        "kubeedge/pause:3.6",
    ]
    return [f"{repo}/{r.rsplit('/', 1)[-1]}" for r in refs] if repo else refs


def daemon_error(body: bytes) -> str:
    """How the docker client words an error answer: "Error response from daemon: ..."."""
    try:
        message = json.loads(body).get("message", "")
    except ValueError:
        message = body.decode(errors="replace").strip()
    return f"Error response from daemon: {message}"


def pull(sock: str, ref: str) -> None:
    # keadm/cmd/keadm/app/cmd/util/image.go@v1.13.0, DockerRuntime.PullImages() lines 93-118:
    #   fmt.Printf("Pulling %s ...\n", image)            // for every image, present or not
    #   list, err := runtime.Client.ImageList(... "reference", image); if len(list) > 0 { continue }
    #   rc, err := runtime.Client.ImagePull(...); if err != nil { return err }
    #   if _, err := io.Copy(io.Discard, rc); err != nil { return err }   // the stream, and
    #   fmt.Printf("Successfully pulled %s\n", image)                     // any error in it,
    # is thrown away: only an error answer before the stream fails the pull.
    print(f"Pulling {ref} ...", flush=True)
    if api(sock, "GET", f"/images/{ref}/json", timeout=30)[0] == 200:
        return
    repo, _, tag = ref.rpartition(":")
    query = urllib.parse.urlencode({"fromImage": repo, "tag": tag})
    auth = base64.urlsafe_b64encode(b"{}").decode()
    status, body = api(sock, "POST", f"/images/create?{query}", b"", {"X-Registry-Auth": auth})
    if status != 200:
        raise JoinError(f"edge node join failed: pull Images failed: {daemon_error(body)}")
    print(f"Successfully pulled {ref}", flush=True)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def cmd_join(args: list[str], root: Path) -> int:
    if version_tuple(_state(root)["version"])[:2] >= (1, 16):
        return keadm_cri.cmd_join(args, root, _state(root))
    opts = parse(JOIN_FLAGS, args)
    if not opts["cloudcore-ipport"]:
        return fail('required flag(s) "cloudcore-ipport" not set')
    state = _state(root)
    steps = klog.Steps()
    version = opts["kubeedge-version"] or state["version"]
    if not version.startswith("v"):
        version = "v" + version
    steps.printf("join.go:75", "Check KubeEdge edgecore process status")
    if sim.programs_running("edgecore"):
        return fail("EdgeCore is already running on this node, please run reset to clean up first")
    steps.printf("join.go:84", "Check if the management directory is clean")
    etc = root / "etc/kubeedge"
    if etc.is_dir() and any(etc.iterdir()):
        return fail("the management directory /etc/kubeedge/ is not clean, please remove it first")
    steps.printf("join.go:177", "Create the necessary directories")
    for d in ("etc/kubeedge", "etc/kubeedge/config", "var/log/kubeedge", "var/lib/kubeedge"):
        (root / d).mkdir(parents=True, exist_ok=True)
    if opts["runtimetype"] == "remote":
        # edge/image.go@v1.13.0 request(): util.NewContainerRuntime() comes before the
        # "Pull Images" step; for "remote" it asks the CRI for its image API version
        # (remote_image.go determineAPIVersion):
        #   return fmt.Errorf("unable to determine image API version: %w", err)
        endpoint = opts["remote-runtime-endpoint"].removeprefix("unix://")
        if not (root / endpoint.lstrip("/")).exists():
            return fail(
                "edge node join failed: unable to determine image API version: rpc error: code = "
                'Unavailable desc = connection error: desc = "transport: Error while dialing dial unix '
                f'{endpoint}: connect: no such file or directory"'
            )
    steps.printf("image.go:38", "Pull Images")
    sock = docker_socket()
    installation, mosquitto, _ = _images(version, opts["image-repository"])
    # pkg/image/image.go@v1.13.0, Set.List(): `for _, v := range s` over a Go map, so
    # the order differs from run to run.
    images = _images(version, opts["image-repository"])
    random.shuffle(images)
    try:
        for ref in images:
            pull(sock, ref)
    except OSError as exc:
        return fail(
            f"edge node join failed: pull Images failed: Cannot connect to the Docker daemon at unix://{sock}. Is the docker daemon running? ({exc})"
        )
    except JoinError as exc:
        return fail(str(exc))
    steps.printf("image.go:43", "Copy resources from the image to the management directory")
    # util/image.go@v1.13.0, CopyResources(): ContainerCreate from the installation
    # image (an image missing because its pull broke mid-stream fails here, with the
    # daemon's "No such image"); the copy's own exit status is never looked at.
    body = json.dumps({"Image": installation, "Cmd": ["/bin/sh", "-c", "cp /usr/local/bin/edgecore /tmp/usr/local/bin/edgecore"],
                       "HostConfig": {"NetworkMode": "none"}}).encode()  # fmt: skip
    status, out = api(
        sock, "POST", "/containers/create", body, {"Content-Type": "application/json"}
    )
    if status != 201:
        return fail(f"edge node join failed: copy resources failed: {daemon_error(out)}")
    api(sock, "DELETE", f"/containers/{json.loads(out)['Id']}?force=1")
    # The copy runs in a container of the installation image; keadm never looks at how
    # it ended (ContainerWait's status is discarded). An image for another architecture
    # cannot run on this board ("exec format error"): no edgecore is copied.
    built_for = json.loads(api(sock, "GET", f"/images/{installation}/json", timeout=30)[1]).get(
        "Architecture"
    )
    board_arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(os.uname().machine)
    copied = built_for == board_arch
    edgecore = root / "usr/local/bin/edgecore"
    if copied:
        edgecore.parent.mkdir(parents=True, exist_ok=True)
        edgecore.write_text(
            f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
            f"from tests.kubeedge_sim.edgecore import main\nsys.exit(main(sys.argv[1:], root={str(root)!r}))\n"
        )
        edgecore.chmod(0o755)
    if opts["with-mqtt"]:
        steps.printf("image.go:52", "Start the default mqtt service")
        (root / "var/lib/kubeedge/mqtt/config").mkdir(parents=True, exist_ok=True)
        (root / "var/lib/kubeedge/mqtt/config/mosquitto.conf").write_text(
            "listener 1883\nallow_anonymous true\n"
        )
        # The real image brings its CMD; the tiny test image needs one spelled out.
        body = json.dumps({"Image": mosquitto, "Cmd": ["/usr/sbin/mosquitto", "-c", "/mosquitto/config/mosquitto.conf"], "HostConfig": {"NetworkMode": "none",
                           "RestartPolicy": {"Name": "unless-stopped"}}}).encode()  # fmt: skip
        status, out = api(
            sock, "POST", "/containers/create?name=mqtt", body, {"Content-Type": "application/json"}
        )
        if status != 201:
            return fail(f"edge node join failed: run MQTT failed: {daemon_error(out)}")
        # util/image.go@v1.13.0, DockerRuntime.RunMQTT() lines 123-147: host ports
        # "1883:1883" and "9001:9001", then ContainerStart. This dockerd runs no
        # containers, so the start's port binding is checked here, in docker's words.
        for port in (1883, 9001):
            if not _port_free(port):
                cid = json.loads(out)["Id"]
                return fail(
                    "edge node join failed: run MQTT failed: Error response from daemon: driver failed "
                    f"programming external connectivity on endpoint mqtt ({cid}): Error starting userland "
                    f"proxy: listen tcp4 0.0.0.0:{port}: bind: address already in use"
                )
    steps.printf("join.go:188", "Generate systemd service file")
    unit_dir = root / "etc/systemd/system"
    if not unit_dir.is_dir():
        return fail(
            "edge node join failed: create systemd service file failed: open "
            "/etc/systemd/system/edgecore.service: no such file or directory"
        )
    (unit_dir / "edgecore.service").write_text(UNIT)
    # join.go lines 193-198: the token goes to bootstrap-edgecore.conf (0640), and
    #   defer os.Remove(filepath.Join(util.KubeEdgePath, "bootstrap-edgecore.conf"))
    # removes it when join() returns — after the wait, success or not. Only a keadm that
    # is killed leaves it (with the token) behind.
    bootstrap = root / "etc/kubeedge/bootstrap-edgecore.conf"
    bootstrap.write_text(opts["token"])
    bootstrap.chmod(0o640)
    try:
        error = _configure_and_start(root, opts, state, steps)
    finally:
        bootstrap.unlink(missing_ok=True)
    return fail(error) if error else 0


def _configure_and_start(
    root: Path, opts: dict[str, Any], state: dict[str, Any], steps: klog.Steps
) -> str | None:
    """Steps 8 and 9 and the certificate wait: the error join() would return, or None."""
    steps.printf("join.go:200", "Generate EdgeCore default configuration")
    host, _, _ = opts["cloudcore-ipport"].rpartition(":")
    hostname = (
        (root / "etc/hostname").read_text().strip()
        if (root / "etc/hostname").exists()
        else "localhost"
    )
    node = opts["edgenode-name"] or (
        hostname if DNS1123.fullmatch(hostname) else "default-edge-node"
    )
    labels = (
        dict(kv.split("=", 1) for kv in opts["labels"].split(",") if "=" in kv)
        if opts["labels"]
        else {}
    )
    token = opts["token"]
    # join.go@v1.13.0 lines 282-300 set the runtime type, cgroup driver and runtime
    # endpoints, never dockerEndpoint: it stays empty and `omitempty` drops it.
    (root / "etc/kubeedge/config/edgecore.yaml").write_text(EDGECORE_YAML.format(
        host=host, certport=opts["certport"] or "10002", token=json.dumps(token), cloudcore=opts["cloudcore-ipport"],
        runtime=opts["runtimetype"], node=node, labels=json.dumps(labels),
        endpoint=opts["remote-runtime-endpoint"], cgroupdriver=opts["cgroupdriver"],
    ))  # fmt: skip
    steps.printf("join.go:205", "Run EdgeCore daemon")
    # edge/join.go@v1.13.0, runEdgeCore() (lines 412-432) and util/exec.go (line 22):
    #   binExec = fmt.Sprintf("sudo systemctl daemon-reload && sudo systemctl enable %s && sudo systemctl start %s", ...)
    #   cmd := util.NewCommand(binExec)        // exec.Command("bash", "-c", command)
    #   ... klog.Infoln(tip)                   // the tip comes before the 300 s wait
    # and join.go line 208: return fmt.Errorf("start edgecore failed: %v", err)
    command = "sudo systemctl daemon-reload && sudo systemctl enable edgecore && sudo systemctl start edgecore"
    # util/exec.go Exec(): "failed to exec '<Args joined>'", then ", err: <stderr>" for an
    # exit status, then ", err: <error>"; stdout and stderr are captured, not shown.
    exec_failed = (
        f"edge node join failed: start edgecore failed: failed to exec 'bash -c {command}', err: "
    )
    if on_path(root, "bash") is None:
        return exec_failed + 'exec: "bash": executable file not found in $PATH'
    if on_path(root, "sudo") is None:
        return exec_failed + "bash: line 1: sudo: command not found\n, err: exit status 127"
    captured, errors = io.StringIO(), io.StringIO()
    if real_systemd(root):
        # On a system booted with systemd (a test's nspawn container), exactly what keadm
        # does: bash -c "sudo systemctl ...", the real manager starting edgecore.service.
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                              timeout=120, check=False)  # fmt: skip
        if done.returncode != 0:
            return exec_failed + f"{done.stderr}, err: exit status {done.returncode}"
        captured.write(done.stdout)
    for argv in (
        ()
        if real_systemd(root)
        else (["daemon-reload"], ["enable", "edgecore"], ["start", "edgecore"])
    ):
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(errors):
            rc = systemctl.main(argv, str(root))
        if rc != 0:
            return exec_failed + f"{errors.getvalue()}, err: exit status {rc}"
    klog.line("I", "join.go:431", captured.getvalue().removesuffix("\n"))
    klog.line(
        "I",
        "join.go:432",
        "KubeEdge edgecore is running, For logs visit: journalctl -u edgecore.service -xe",
    )
    # join.go lines 214-221: wait.Poll(10*time.Second, 300*time.Second, …) — the first
    # look comes one interval after the start.
    poll_s, deadline = float(state["poll_s"]), time.monotonic() + float(state["cert_wait_s"])
    wanted = [
        root / p
        for p in (
            "etc/kubeedge/ca/rootCA.crt",
            "etc/kubeedge/certs/server.crt",
            "etc/kubeedge/certs/server.key",
        )
    ]
    while True:
        time.sleep(poll_s)  # keadm's own poll interval, the thing modelled
        if all(p.exists() for p in wanted):
            break
        if time.monotonic() >= deadline:
            return "edge node join failed: timed out waiting for the condition"
    return None


def cmd_reset(args: list[str], root: Path) -> int:
    opts = parse(RESET_FLAGS, args)
    # keadm/cmd/keadm/app/cmd/util/common.go@v1.13.0, RunningModuleV2(): the cloud first —
    #   cloudCoreRunning, err := IsCloudcoreContainerRunning(constants.SystemNamespace, opt.Kubeconfig)
    #   if cloudCoreRunning { return types.KubeEdgeCloudRunning }
    # with --kube-config defaulting to /root/.kube/config (reset.go newResetOptions): on a
    # board that holds a kubeconfig for the cluster, reset tears down cloudcore itself.
    kubeconfig = Path(opts["kube-config"])
    if str(kubeconfig) == "/root/.kube/config":
        kubeconfig = root / "root/.kube/config"  # the default: the board's own file
    if keadm_cloud.reset_cloud(str(kubeconfig)):
        return 0
    if not sim.programs_running("edgecore"):
        print("None of KubeEdge components are running in this host, exit")
        return 0
    if not opts["force"]:
        sys.stdout.write("[reset] WARNING: Changes made to this host by 'keadm init' or 'keadm join' will be reverted.\n"
                         "[reset] Are you sure you want to proceed? [y/N]: ")  # fmt: skip
        sys.stdout.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            print("Aborted reset operation")
            return 0
    units = systemctl._state(root)["units"]
    if units.get("edgecore.service", {}).get("enabled"):
        for argv in (["stop", "edgecore"], ["disable", "edgecore"]):
            systemctl.main(argv, str(root))
        (root / "etc/systemd/system/edgecore.service").unlink(missing_ok=True)
        systemctl.main(["daemon-reload"], str(root))
    else:
        for pid in sim.programs_running("edgecore"):
            os.kill(pid, 15)
    sock = docker_socket()
    if opts["runtimetype"] == "docker":
        status, body = api(sock, "GET", "/containers/json?all=1", timeout=30)
        for c in json.loads(body) if status == 200 else []:
            name = c["Names"][0].lstrip("/")
            if name.startswith("k8s_") or name == "mqtt":
                api(sock, "DELETE", f"/containers/{c['Id']}?force=1", timeout=30)
    for d in ("etc/kubeedge", "var/log/kubeedge", "var/lib/kubeedge", "var/lib/edged", "var/lib/dockershim",
              "var/run/kubernetes", "var/lib/cni"):  # fmt: skip
        shutil.rmtree(root / d, ignore_errors=True)
    print("Edge node reset: edgecore stopped, management directories removed")
    return 0


def cmd_upgrade(args: list[str], root: Path) -> int:
    state = _state(root)
    # `keadm upgrade edge` and `keadm upgrade cloud` from v1.16 (edge/upgrade.go,
    # cloud/upgrade.go); before it, a bare `upgrade` that kedge never runs.
    if version_tuple(state["version"])[:2] < (1, 16) or args[:1] not in (["edge"], ["cloud"]):
        sys.stderr.write("keadm simulator: only `upgrade edge|cloud` from v1.16 is simulated\n")
        return 1
    if args[0] == "cloud":
        return keadm_cloud.cmd_upgrade_cloud(args[1:], root)
    return keadm_cri.cmd_upgrade_edge(args[1:], root, state)


def cmd_version(args: list[str], root: Path) -> int:
    parse([], args)
    st = _state(root)
    major, minor, _ = st["version"].lstrip("v").split(".")
    commit = GIT_COMMITS.get(st["version"], "0" * 40)
    print(
        f'version: version.Info{{Major:"{major}", Minor:"{minor}", GitVersion:"{st["version"]}", '
        f'GitCommit:"{commit}", GitTreeState:"clean", BuildDate:"2023-01-18T06:40:57Z", '
        f'GoVersion:"go1.17.13", Compiler:"gc", Platform:"{st["platform"]}"}}'
    )
    return 0


def main(argv: list[str], root: str) -> int:
    if not argv:
        print("keadm: KubeEdge installation tool (simulated)\n\nUsage:\n  keadm [command]")
        return 0
    cmd, rest = argv[0], argv[1:]
    handlers = {"version": cmd_version, "join": cmd_join, "reset": cmd_reset,
                "init": keadm_cloud.cmd_init, "gettoken": keadm_cloud.cmd_gettoken,
                "upgrade": cmd_upgrade}  # fmt: skip
    try:
        if cmd in handlers:
            return handlers[cmd](rest, Path(root))
        if cmd.startswith("-"):
            raise CobraError(f"unknown flag: {cmd.split('=', 1)[0]}")
        if cmd not in COMMANDS:
            sys.stderr.write(
                f'Error: unknown command "{cmd}" for "keadm"\nRun \'keadm --help\' for usage.\n'
            )
            return 1
    except CobraError as exc:
        sys.stderr.write(f"Error: {exc}\n")
        return 1
    sys.stderr.write(f"keadm simulator: '{cmd}' is not simulated yet\n")
    return 1

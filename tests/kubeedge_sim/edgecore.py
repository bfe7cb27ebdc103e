"""A stand-in for edgecore v1.13, started by the simulated systemd.

It does what breaks real boards: refuses to run beside a kubelet; fetches its
certificates from cloudcore with the token (CA hash, bearer JWT, TLS verified against
the CA with this machine's clock); as dockershim, unlinks whatever socket sits at
remoteRuntimeEndpoint and serves there; and crash-loops with kubelet's own words when
its cgroup driver differs from docker's. Then it runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kedge.cri import CriClient, CriError
from kedge.names import version_tuple
from tests.harness.dockerd import api
from tests.kubeedge_sim import klog, sim

CONFIG = "etc/kubeedge/config/edgecore.yaml"
CA = "etc/kubeedge/ca/rootCA.crt"
CERT = "etc/kubeedge/certs/server.crt"
KEY = "etc/kubeedge/certs/server.key"


def log(level: str, where: str, msg: str) -> None:
    klog.line(level, where, msg)


def refused_programs(version: str) -> tuple[str, ...]:
    return ("kubelet", "kube-proxy") if version_tuple(version)[:2] < (1, 19) else ("kubelet",)


def refusal(program: str, version: str) -> str:
    if version_tuple(version)[:2] < (1, 19):
        return f"{program} should not running on edge node when running edgecore"
    return f"{program} should not be running on edge node when starting edgecore"


def fatal(where: str, msg: str) -> int:
    log("E", where, msg)
    return 1


def value(cfg: str, key: str) -> str:
    found = re.search(rf"^\s*{key}:\s*(.*)$", cfg, re.M)
    return found[1].strip().strip('"') if found else ""


@dataclass(frozen=True)
class DockerEndpoint:
    url: str
    path: str  # where the socket is on this machine


def docker_endpoint(board: Path, cfg: str) -> DockerEndpoint:
    """dockershim's docker: edged's dockerEndpoint if set (edge/pkg/edged/config/config.go
    line 198), else the client's FromEnv — DOCKER_HOST in edgecore's own environment,
    which systemd gives it, else unix:///var/run/docker.sock (libdocker/client.go,
    getDockerClient). The standard socket is the board's, below its root; a DOCKER_HOST
    names a socket on this machine (the test's dockerd)."""
    url = value(cfg, "dockerEndpoint") or os.environ.get("DOCKER_HOST", "")
    if url:
        return DockerEndpoint(url, url.removeprefix("unix://"))
    return DockerEndpoint("unix:///var/run/docker.sock", str(board / "var/run/docker.sock"))


def cgroups_not_mounted(board: Path) -> list[str]:
    """The v1 controllers kubelet requires (cpu, cpuacct, cpuset, memory) that the board
    has disabled, from its /proc/cgroups (a disabled controller is not mounted). On the
    unified hierarchy kubelet 1.23 skips this check."""
    if (board / "sys/fs/cgroup/cgroup.controllers").exists():
        return []
    try:
        table = (board / "proc/cgroups").read_text()
    except FileNotFoundError:
        return []
    enabled = {
        f[0]: f[3] == "1" for f in (line.split() for line in table.splitlines()) if len(f) >= 4
    }
    return [c for c in ("cpu", "cpuacct", "cpuset", "memory") if enabled.get(c) is False]


def bootstrap_certs(root: Path, cfg: str) -> str | None:
    """edgehub's certificate manager; returns an error text or None."""
    token = value(cfg, "token")
    server = value(cfg, "httpServer")
    node = value(cfg, "hostnameOverride")
    # edge/pkg/edgehub/certificate/certmanager.go@v1.13.0, applyCerts(): the CA first,
    # then the token's shape —
    #   cacert, err := GetCACert(cm.caURL)
    #   ... tokenParts := strings.Split(cm.token, "."); if len(tokenParts) != 4 {
    #       return fmt.Errorf("token credentials are in the wrong format")
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"{server}/ca.crt", context=insecure, timeout=10) as resp:
            ca_der = resp.read()
    except (urllib.error.URLError, OSError) as exc:
        return f'failed to get CA certificate, err: Get "{server}/ca.crt": {exc}'
    parts = token.split(".")
    if len(parts) != 4:
        return "token credentials are in the wrong format"
    ca_hash = hashlib.sha256(ca_der).hexdigest()
    if ca_hash != parts[0]:
        return f"failed to validate CA certificate. tokenCAhash: {parts[0]}, CAhash: {ca_hash}"
    ca_pem = ssl.DER_cert_to_PEM_cert(ca_der)
    (root / CA).parent.mkdir(parents=True, exist_ok=True)
    (root / CA).write_text(ca_pem)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    verified = ssl.create_default_context(cadata=ca_pem)
    request = urllib.request.Request(
        f"{server}/edge.crt",
        data=csr,
        method="GET",
        headers={"Authorization": "Bearer " + ".".join(parts[1:]), "NodeName": node},
    )
    try:
        with urllib.request.urlopen(request, context=verified, timeout=10) as resp:
            cert_der = resp.read()
    except urllib.error.HTTPError as exc:
        return f"failed to get edge certificate from the cloudcore, error: {exc.read().decode().strip()}"
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            return f'failed to get edge certificate from the cloudcore, error: Get "{server}/edge.crt": {go_x509(reason, server)}'
        return f'failed to get edge certificate from the cloudcore, error: Get "{server}/edge.crt": {reason}'
    except OSError as exc:
        return f'failed to get edge certificate from the cloudcore, error: Get "{server}/edge.crt": {exc}'
    (root / CERT).parent.mkdir(parents=True, exist_ok=True)
    (root / CERT).write_text(ssl.DER_cert_to_PEM_cert(cert_der))
    (root / KEY).write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    (root / CONFIG).write_text(re.sub(r"^(\s*token:).*$", r'\1 ""', cfg, flags=re.M))
    return None


# pkg/util/constants CurrentSupportK8sVersion at each release kedge tests with; edged
# reports "<it>-kubeedge-<release>" as the Node's kubeletVersion (edge/pkg/edged/edged.go).
K8S_OF = {(1, 13): "v1.23.15", (1, 20): "v1.30.7", (1, 21): "v1.30.7", (1, 22): "v1.31.12",
          (1, 23): "v1.32.10"}  # fmt: skip


RECONNECT_SPEEDUP = 6  # the simulated reconnect wait is this many times shorter


def connect_hub(root: Path, cfg: str, version: str = "v1.13.0") -> None:
    """edgehub's websocket client (edge/pkg/edgehub/clients/wsclient/websocket.go@v1.13.0,
    Init()): mTLS to websocket.server verified against the CA, headers node_id and
    project_id; 5 tries 5 s apart (retryCount, cloudAccessSleep), then edgehub.go:
    `klog.Errorf("connection failed: %v, will reconnect after %s", err, waitTime.String())`
    and again, waitTime being twice edgeHub's heartbeat (30s with keadm's 15): said as
    the real one says it, slept at 1/RECONNECT_SPEEDUP of it to keep the stories fast.
    edgecore keeps running either way: an edge that never reaches port 10000
    stays "active" and never becomes a Node. The kubelet_version header stands for the
    node status edged posts as soon as the connection is up."""
    heartbeat = int(value(cfg, "heartbeat") or 15)
    wait_s = 2 * heartbeat
    kubelet = f"{K8S_OF.get(version_tuple(version)[:2], 'v1.30.7')}-kubeedge-{version}"
    server = value(cfg, "server")
    node = value(cfg, "hostnameOverride")
    host, _, port = server.rpartition(":")
    context = ssl.create_default_context(cafile=str(root / CA))
    context.load_cert_chain(root / CERT, root / KEY)
    while True:
        for _ in range(5):
            log("I", "websocket.go:51", "Websocket start to connect Access")
            try:
                raw = socket.create_connection((host, int(port)), timeout=10)
                conn = context.wrap_socket(raw, server_hostname=host)
                conn.sendall(
                    f"GET /e632aba927ea4ac2b575ec1603d56f10/{node}/events HTTP/1.1\r\nHost: {server}\r\n"
                    f"Upgrade: websocket\r\nConnection: Upgrade\r\nnode_id: {node}\r\n"
                    f"project_id: e632aba927ea4ac2b575ec1603d56f10\r\nkubelet_version: {kubelet}\r\n\r\n".encode()
                )
                status = conn.recv(4096).split(b"\r\n", 1)[0]
                if b" 101 " not in status + b" ":
                    conn.close()
                    raise OSError("websocket: bad handshake")
            except (OSError, ssl.SSLError) as exc:
                log("E", "websocket.go:90", f"Init websocket connection failed {exc}")
                time.sleep(5)
                continue
            log("I", "websocket.go:94", "Websocket connect to cloud access successful")
            with contextlib.suppress(OSError):
                while conn.recv(4096):
                    pass
            log("W", "edgehub.go:126", f"connection is broken, will reconnect after {wait_s}s")
            break
        else:
            log("E", "edgehub.go:107", "connection failed: max retry count reached when connecting to cloud, "
                f"will reconnect after {wait_s}s")  # fmt: skip
        time.sleep(wait_s / RECONNECT_SPEEDUP)


def go_x509(err: ssl.SSLCertVerificationError, server: str) -> str:
    """Go's crypto/x509 wording for what OpenSSL found."""
    msg = err.verify_message or str(err)
    if "not yet valid" in msg or "expired" in msg:
        return f"x509: certificate has expired or is not yet valid: current time {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} is before the certificate's NotBefore"
    if "mismatch" in msg:
        return go_hostname_error(server)
    return f"x509: {msg}"


def go_hostname_error(server: str) -> str:
    """crypto/x509 HostnameError.Error() (Go 1.19, what v1.13.0 is built with): for an IP
    host, every IP SAN joined by ", " —
        for _, san := range c.IPAddresses { if len(valid) > 0 { valid += ", " }
            valid += san.String() }
        ...
        return "x509: certificate is valid for " + valid + ", not " + h.Host"""
    host, _, port = server.removeprefix("https://").rpartition(":")
    insecure = ssl.create_default_context()
    insecure.check_hostname, insecure.verify_mode = False, ssl.CERT_NONE
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        insecure.wrap_socket(raw) as tls,
    ):
        der = tls.getpeercert(binary_form=True) or b""
    cert = x509.load_der_x509_certificate(der)
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        sans = x509.SubjectAlternativeName([])
    ips = [str(a) for a in sans.get_values_for_type(x509.IPAddress)]
    if not ips:
        return (
            f"x509: cannot validate certificate for {host} because it doesn't contain any IP SANs"
        )
    return f"x509: certificate is valid for {', '.join(ips)}, not {host}"


def main(argv: list[str], root: str, version: str = "v1.13.0") -> int:
    board = Path(root)
    if argv[:1] == ["--version"]:  # cobra's version flag (pkg/version/verflag)
        print(f"KubeEdge {version}")
        return 0
    log("I", "server.go:77", f"Version: {version}")
    faults = sim.faults(board)
    if faults.get("edgecore_crash"):
        return fatal("edged.go:249", faults["edgecore_crash"])
    if faults.get("edgecore_stall"):
        # Connected to nothing, fetching nothing: keadm waits out its certificate timeout.
        log("W", "certmanager.go:98", "waiting for cloudcore to answer")
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
        return 0
    # edge/cmd/edgecore/app/server.go@v1.13.0, environmentCheck(), lines 192-197:
    #   case "kubelet": return errors.New("kubelet should not running on edge node when running edgecore")
    #   case "kube-proxy": return errors.New("kube-proxy should not running on edge node when running edgecore")
    # From v1.19 only kubelet (server.go@v1.23.1 line 194, klog.Exit at line 120):
    #   "kubelet should not be running on edge node when starting edgecore"
    # Held to the real v1.13.0 and v1.23.1 edgecore: tests/real/test_differential.py.
    if os.environ.get("CHECK_EDGECORE_ENVIRONMENT") != "false":
        for program in refused_programs(version):
            if sim.programs_running(program):
                return fatal(
                    "server.go:79",
                    f"failed to check the running environment: {refusal(program, version)}",
                )
    try:
        cfg = (board / CONFIG).read_text()
    except FileNotFoundError:
        return fatal("server.go:88", f"open /{CONFIG}: no such file or directory")
    if not all((board / p).exists() for p in (CA, CERT, KEY)):
        error = bootstrap_certs(board, cfg)
        if error:
            return fatal("certmanager.go:117", error)
        log("I", "certmanager.go:130", "Certificate rotation is enabled.")
    runtime = value(cfg, "containerRuntime")
    endpoint = value(cfg, "remoteRuntimeEndpoint").removeprefix("unix://")
    served: socket.socket | None = None
    if runtime == "docker" and endpoint:
        # vendor/k8s.io/kubernetes/pkg/kubelet/kubelet_dockershim.go@v1.13.0: first
        # dockershim.NewDockerService(...) (line 55), which asks docker and refuses a
        # different cgroup driver (docker_service.go line 277), then
        # dockerremote.NewDockerServer(remoteRuntimeEndpoint, ds) (line 65), whose Start
        # removes whatever is at the endpoint and serves CRI there.
        docker = docker_endpoint(board, cfg)
        try:
            status, body = api(docker.path, "GET", "/info", timeout=10)
            docker_driver = (
                json.loads(body).get("CgroupDriver", "cgroupfs") if status == 200 else None
            )
        except OSError:
            # The docker client's ErrorConnectionFailed, inside kubelet's wrapping.
            return fatal(
                "edged.go:249",
                "Start edged failed, err: failed to run Kubelet: failed to create kubelet: "
                f"Cannot connect to the Docker daemon at {docker.url}. Is the docker daemon running?",
            )
        driver = value(cfg, "cgroupDriver") or "cgroupfs"
        if docker_driver and driver != docker_driver:
            return fatal(
                "edged.go:249",
                "Start edged failed, err: failed to run Kubelet: misconfiguration: kubelet cgroup driver: "
                f'"{driver}" is different from docker cgroup driver: "{docker_driver}"',
            )
        path = board / endpoint.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
            log("I", "util_unix.go:104", f'"Unlinked socket" path="{endpoint}"')
        served = socket.socket(socket.AF_UNIX)
        served.bind(str(path))
        served.listen()
    elif runtime == "remote":
        sock = board / endpoint.lstrip("/")
        if not sock.exists():
            return fatal(
                "edged.go:249",
                "Start edged failed, err: failed to run Kubelet: validate service connection: CRI v1 runtime API "
                f'is not implemented for endpoint "unix://{endpoint}": rpc error: code = Unavailable desc = '
                f'connection error: desc = "transport: Error while dialing dial unix {endpoint}: connect: '
                'no such file or directory"',
            )
    elif cri_endpoint := value(cfg, "containerRuntimeEndpoint"):
        # v1.14 on: kubelet's own CRI client (vendor/k8s.io/cri-client, NewRemoteRuntimeService
        # then validateServiceConnection) against tailoredKubeletConfig's endpoint.
        try:
            asyncio.run(CriClient(cri_endpoint, 10).version())
        except CriError as exc:
            return fatal(
                "edged.go:249",
                "Start edged failed, err: failed to run Kubelet: validate service connection: "
                f'validate CRI v1 runtime API for endpoint "{cri_endpoint}": {exc}',
            )
        (board / (value(cfg, "rootDirectory") or "/var/lib/kubelet").lstrip("/")).mkdir(
            parents=True, exist_ok=True
        )
    log("I", "edged.go:278", "Starting edged...")
    missing = cgroups_not_mounted(board)
    if missing:
        # vendor/k8s.io/kubernetes/pkg/kubelet/cm/container_manager_linux.go@v1.13.0,
        # validateSystemRequirements() line 195 (cgroup v1 only), reported by kubelet.go
        # line 1307 — klog.ErrorS(err, "Failed to start ContainerManager"); os.Exit(1).
        return fatal(
            "kubelet.go:1307",
            f'"Failed to start ContainerManager" err="system validation failed - Following Cgroup '
            f'subsystem not mounted: [{" ".join(missing)}]"',
        )
    if faults.get("edgecore_crash_after_certs"):
        time.sleep(0.3)  # edged's start-up, then a crash: systemd restarts it after RestartSec
        return fatal("edged.go:249", faults["edgecore_crash_after_certs"])
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    hub = threading.Thread(target=connect_hub, args=(board, cfg, version), daemon=True)
    hub.start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    log("I", "server.go:125", "Shutting down edgecore")
    if served is not None:
        served.close()
    return 0

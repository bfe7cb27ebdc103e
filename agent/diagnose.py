"""Known failure texts of keadm join and edgecore, and what to do about each."""

from __future__ import annotations

import re
from dataclasses import dataclass

from kedge.wire import Cause


@dataclass(frozen=True)
class Known:
    id: str
    pattern: re.Pattern[str]
    summary: str
    remedy: str


KNOWN: tuple[Known, ...] = (
    Known(
        "cgroup-driver-mismatch",
        re.compile(
            r'kubelet cgroup driver: "(?P<edge>\w+)" is different from docker cgroup driver: "(?P<docker>\w+)"'
        ),
        'edgecore uses the "{edge}" cgroup driver but docker uses "{docker}"',
        'Set cgroup_driver = "auto" so the join follows docker, or run '
        "`kedge-agent fix --only cgroup-driver` to make docker use the configured driver.",
    ),
    Known(
        "runtime-cgroup-mismatch",
        re.compile(r'expected cgroupsPath to be of format "slice:prefix:name" for systemd cgroups'),
        "containerd's runc uses the systemd cgroup driver but the join passed --cgroupdriver=cgroupfs",
        'Run `kedge-agent fix --only runtime-cgroup` (or set cgroup_driver = "auto"), then join again.',
    ),
    Known(
        "no-kmsg",
        # Seen on the real v1.23.1 in a container booted without /dev/kmsg.
        re.compile(r"failed to create kubelet: open /dev/kmsg: no such file or directory"),
        "edgecore's kubelet needs /dev/kmsg, which this board does not have (a container "
        "started without it)",
        "Give the board /dev/kmsg (systemd-nspawn --bind=/dev/kmsg; docker run --device "
        "/dev/kmsg; LXC: lxc.mount.entry = /dev/kmsg dev/kmsg none bind,optional,create=file); "
        "`kedge-agent check --only kmsg` says when it is there.",
    ),
    Known(
        "node-already-registered",
        # edge/join.go@v1.23.1 isNodeExist: anything but 404 from GET /node/<name>.
        re.compile(r"node already exists or internal error occurred, cannot register again"),
        "the cluster still has a Node of this name (from an earlier join), and KubeEdge from "
        "v1.20 refuses to register it again",
        "Delete the old Node first, on the master: `kubectl delete node <name>`; "
        "`kedge-agent check --only cloudcore` says when it is gone.",
    ),
    Known(
        "sandbox-image-unavailable",
        re.compile(r'failed to get sandbox image "(?P<image>[^"]+)"'),
        "the runtime could not get its sandbox image {image} for keadm's copy step",
        "kedge-agent fix --only sandbox-image pulls it; offline, import it with ctr -n k8s.io images import.",
    ),
    Known(
        "clock-x509",
        re.compile(r"x509: certificate has expired or is not yet valid"),
        "the board's clock is outside cloudcore's certificate validity",
        "Set the clock: `kedge-agent fix --only clock` (or chronyc makestep / ntpdate), then join again.",
    ),
    Known(
        "certificate-address",
        # Go's HostnameError lists every IP SAN: "valid for A, B, not C".
        re.compile(
            r"x509: certificate is valid for (?P<valid>[^\n]+?), not (?P<host>[^\s\"]+)"
            r"|x509: cannot validate certificate for (?P<bare>\S+) because it doesn't contain any IP SANs"
        ),
        "cloudcore's certificate does not name the address the board uses",
        "Point the board at an address the certificate names, or add this one on the master: "
        "kedge-cloud-api init --advertise-address <all addresses> re-issues cloudcore's certificate "
        "(a plain keadm init keeps the certificate of the first install).",
    ),
    Known(
        "wrong-ca",
        re.compile(r"failed to validate CA certificate"),
        "the token was issued by another cloudcore (its CA hash does not match)",
        "Take a fresh token from this cloudcore (`keadm gettoken`) and check the cloudcore address.",
    ),
    Known(
        "bad-token",
        re.compile(r"Invalid authorization token|token credentials are in the wrong format"),
        "cloudcore rejected the token (wrong, expired, or mangled)",
        "Take a fresh token on the master with `keadm gettoken`; tokens last 12 to 24 h.",
    ),
    Known(
        "kubelet-running",
        # v1.13: "kubelet should not running on edge node" (and kube-proxy); from v1.19
        # only kubelet: "kubelet should not be running on edge node when starting edgecore"
        # (edge/cmd/edgecore/app/server.go@v1.23.1).
        re.compile(r"(?P<program>kubelet|kube-proxy) should not (?:be )?running on edge node"),
        "a {program} process runs on the board, and edgecore will not start beside it",
        "Remove or stop it: `kedge-agent check --only conflicts` lists what is there.",
    ),
    Known(
        "kubepods-exists",
        re.compile(r"Unit kubepods\.slice already exists"),
        "another kubelet (often k3s) already owns the kubepods cgroups",
        "Uninstall k3s/kubeadm, reboot, and join again.",
    ),
    Known(
        "register-layer",
        re.compile(r"failed to register layer[^\n]*"),
        "docker could not unpack an image layer (storage driver or data-root filesystem)",
        "Put docker's data-root on a local ext4 disk (not USB/NFS/overlay-on-overlay) and restart docker, "
        "or pre-load the images: `kedge-agent fix --only images --from-archive FILE`.",
    ),
    Known(
        "http-registry",
        re.compile(r"server gave HTTP response to HTTPS client"),
        "the image registry speaks plain HTTP",
        'Add the registry to "insecure-registries" in /etc/docker/daemon.json and restart docker.',
    ),
    Known(
        # keadm throws its pull stream away and says "Successfully pulled" whatever it held
        # (util/image.go@v1.13.0): a pull that broke midway shows up one step later.
        "image-missing",
        re.compile(
            r"(?:copy resources|run MQTT) failed: Error response from daemon: No such image: (?P<image>\S+)"
        ),
        "the image {image} is not on the board: its pull broke off (keadm reports that as success)",
        "Pull it first: `kedge-agent fix --only images` (retries, registry_mirrors, or --from-archive "
        "for an offline board), then join again.",
    ),
    Known(
        "mqtt-port",
        re.compile(
            r"run MQTT failed: [^\n]*listen tcp4? [\d.:]*:(?P<port>\d+): bind: address already in use"
        ),
        "port {port} is taken, so keadm's MQTT container cannot start",
        "Stop what holds it (`kedge-agent check --only ports` names it), or stop a system "
        "mosquitto: systemctl disable --now mosquitto.",
    ),
    Known(
        "cri-unavailable",
        # v1.13's keadm: "unable to determine image API version: …"; v1.23.1's (pkg/image/
        # image_runtime.go): "failed to new remote image service, err: validate service
        # connection: …".
        re.compile(
            r"(?:unable to determine (?:image|runtime) API version"
            r"|failed to new remote (?:image|runtime) service, err: validate service connection)"
            r": [^\n]*?dial unix (?P<sock>[^:\s]+)"
        ),
        "no container runtime answers on {sock}",
        'With KubeEdge v1.13 and docker, set runtime = "docker" (kedge then passes the dockershim '
        "endpoint); otherwise start containerd or cri-dockerd and point remote_runtime_endpoint at it.",
    ),
    Known(
        # pkg/containers/container_runtime.go@v1.23.1 CopyResources(): the cp runs through
        # ExecSync with a 30 s limit — edgecore is ~70 MB, and a slow SD card misses it.
        "copy-timeout",
        re.compile(
            r"failed to exec copy cmd, err: [^\n]*(?:DeadlineExceeded|deadline exceeded|timeout)"
        ),
        "keadm's copy step gives `cp` 30 s to copy edgecore out of the installation image, "
        "and this board's disk was slower",
        "Join again when the board is idle (the copy is the only step with that limit); if it "
        "keeps failing, the disk under /usr/local/bin is too slow (iostat -x 1 shows it).",
    ),
    Known(
        "copy-failed",
        re.compile(
            r"failed to exec copy cmd, err: "
            r"(?![^\n]*(?:DeadlineExceeded|deadline exceeded|timeout))(?P<error>[^\n]*)"
        ),
        "keadm could not copy edgecore out of the installation image: {error}",
        "`kedge-agent check --only runtime-images,sandbox-image` checks the image and the pod "
        "sandbox the copy runs in; the runtime's log says more (journalctl -u containerd).",
    ),
    Known(
        "image-pull",
        re.compile(r"pull Images failed: (?P<error>[^\n]*)"),
        "keadm could not pull its images: {error}",
        "Pre-pull them with `kedge-agent fix --only images` (tries registry_mirrors), or set "
        "image_repository to a registry that has them.",
    ),
    Known(
        "memory-cgroup",
        re.compile(r"Following Cgroup subsystem not mounted: \[(?P<missing>[^\]]*)\]"),
        "kubelet inside edgecore needs the {missing} cgroup, which this kernel has disabled",
        "Enable it on the kernel command line (cgroup_enable=memory cgroup_memory=1 for the memory "
        "cgroup) and reboot: `kedge-agent check --only cgroup-driver` names the file to edit.",
    ),
    Known(
        "not-clean",
        re.compile(r"the management directory /etc/kubeedge/? is not clean"),
        "an earlier join left /etc/kubeedge behind",
        "Run `kedge-agent reset --yes`, then join again.",
    ),
    Known(
        "edgecore-running",
        re.compile(r"EdgeCore is already running on this node"),
        "keadm found edgecore running — or could not look: its first step runs "
        '`bash -c "pidof edgecore"` and reads a missing bash or pidof as "running"',
        "If `pidof edgecore` prints nothing, install bash and pidof (procps): "
        "`kedge-agent check --only join-tools`; reset would not help. Otherwise run "
        "`kedge-agent reset --yes`, then join again.",
    ),
    Known(
        "docker-down",
        re.compile(
            r"Cannot connect to the Docker daemon at (?P<at>\S+?)\.? Is the docker daemon running"
        ),
        "no docker answers at {at}",
        "systemctl restart docker; journalctl -u docker -e. edgecore finds docker through "
        "DOCKER_HOST in its unit's environment (kedge's join sets it in "
        "/etc/systemd/system/edgecore.service.d/10-kedge-docker-host.conf when docker_host is "
        "not the standard socket): `systemctl show -p Environment edgecore` shows what it got.",
    ),
)

# Used only when nothing more specific explains the failure.
GENERIC: tuple[Known, ...] = (
    Known(
        "edge-certificate",
        re.compile(r"failed to get edge certificate from the cloudcore, error: (?P<error>[^\n]*)"),
        "cloudcore did not issue the edge certificate: {error}",
        "Check cloudcore's logs on the master (kubectl -n kubeedge logs deploy/cloudcore) and that the "
        "token is current.",
    ),
    Known(
        "cert-timeout",
        # keadm's own error line only: edgecore's log says "timed out waiting for the
        # condition" in passing as it starts (CSINode, seen on the real v1.23.1).
        re.compile(
            r"^Error: (?:edge node join failed: )?timed out waiting for the condition\s*$", re.M
        ),
        "edgecore never obtained its certificates within keadm's wait",
        "Read `journalctl -u edgecore` for the reason; check that cloudcore's port 10002 is reachable "
        "(`kedge-agent check --only cloudcore`).",
    ),
)


def recognise(*texts: str) -> list[Cause]:
    """Every known cause found in the texts, most specific first; a generic one only
    when nothing more specific explains the failure."""
    blob = "\n".join(texts)
    return _matches(KNOWN, blob) or _matches(GENERIC, blob)[:1]


def _matches(table: tuple[Known, ...], blob: str) -> list[Cause]:
    found = []
    for known in table:
        if m := known.pattern.search(blob):
            summary = known.summary.format(**m.groupdict())
            found.append(Cause(id=known.id, summary=summary, remedy=known.remedy, evidence=m[0]))
    return found

"""What kedge knows about KubeEdge releases: names, ports, paths and images, each as the
KubeEdge source at the release tag has it (docs/kubeedge-1.13.md and
docs/kubeedge-versions.md quote the lines)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from kedge.names import version_tuple

# uname -m → the arch name in KubeEdge's release assets.
ARCH_BY_MACHINE = {
    "aarch64": "arm64",
    "arm64": "arm64",
    "x86_64": "amd64",
    "amd64": "amd64",
    "armv7l": "arm",
    "armv8l": "arm",
}
# ELF e_machine → KubeEdge arch.
ARCH_BY_ELF_MACHINE = {0x3E: "amd64", 0xB7: "arm64", 0x28: "arm"}
ELF_MACHINE_NAMES = {0x3E: "x86-64", 0xB7: "aarch64", 0x28: "arm", 0x03: "i386", 0xF3: "riscv"}

EDGECORE_PORT = 10350
MQTT_PORT = 1883
# keadm's MQTT container publishes 1883 and 9001 (util/image.go@v1.13.0, RunMQTT).
MQTT_WS_PORT = 9001
KUBELET_PORT = 10250
# cloudcore: cloudhub's websocket, the certificate server, the stream (kubectl logs).
CLOUDHUB_PORT = 10000
CERT_PORT = 10002
STREAM_PORT = 10003
EDGE_PORTS = (CLOUDHUB_PORT, CERT_PORT)  # what an edge must reach

# dockershim left with Kubernetes 1.24, vendored from KubeEdge 1.14 on.
LAST_DOCKER_RELEASE = (1, 13)
DOCKERSHIM_ENDPOINT = "unix:///var/run/dockershim.sock"

MOSQUITTO_IMAGE = "eclipse-mosquitto:1.6.15"
PAUSE_IMAGE = "kubeedge/pause:3.6"

ETC_DIR = "/etc/kubeedge"
# join.go@v1.13.0 runEdgeCore(): wait.Poll(10*time.Second, 300*time.Second, …) for the
# certificates after starting edgecore: a join lasts at least one poll, at most the wait.
KEADM_POLL_S = 10
KEADM_CERT_WAIT_S = 300
EDGECORE_YAML = "/etc/kubeedge/config/edgecore.yaml"
# edgehub's connection cycle, the same at v1.13.0 and v1.23.1 (edge/pkg/edgehub/
# clients/wsclient/websocket.go: 5 tries 5 s apart; edgehub.go: then "will reconnect
# after" twice the heartbeat, 15 s by default). A board whose first tries miss cloudhub
# connects a whole cycle later, and is not failing before then.
HUB_TRIES, HUB_TRY_GAP_S, DEFAULT_HEARTBEAT_S = 5, 5.0, 15
_HEARTBEAT = re.compile(r"^\s+heartbeat:\s*(\d{1,5})\s*$", re.M)
EDGECORE_BIN = "/usr/local/bin/edgecore"  # copied out of the installation image
EDGECORE_UNIT = "edgecore.service"
UNIT_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
STATE_DIRS = ("/var/lib/kubeedge", "/var/lib/edged")


_CGROUP_DRIVER = re.compile(r"^\s+cgroupDriver:\s*(cgroupfs|systemd)\s*$", re.M)


def edgecore_cgroup_driver(edgecore_yaml: str | None) -> str | None:
    """The cgroup driver an edgecore.yaml sets (edged's `cgroupDriver`), None if none."""
    found = _CGROUP_DRIVER.search(edgecore_yaml or "")
    return found[1] if found else None


def hub_cycle_s(edgecore_yaml: str | None) -> float:
    """How long edgecore may take to reach cloudhub once it runs: one cycle of tries and
    the reconnect wait, with the heartbeat its edgecore.yaml sets (`heartbeat` is edgeHub's
    alone in that file)."""
    found = _HEARTBEAT.search(edgecore_yaml or "")
    heartbeat = int(found[1]) if found else DEFAULT_HEARTBEAT_S
    return HUB_TRIES * HUB_TRY_GAP_S + 2 * heartbeat


def supports_docker(version: str) -> bool:
    return version_tuple(version)[:2] <= LAST_DOCKER_RELEASE


def join_images(version: str, repository: str | None = None) -> list[str]:
    """The three images `keadm join` pulls (all three, even with --with-mqtt=false)."""
    images = [f"kubeedge/installation-package:{version}", MOSQUITTO_IMAGE, PAUSE_IMAGE]
    if repository:
        # keadm keeps only the last path element and puts it under the repository.
        images = [f"{repository}/{ref.rsplit('/', 1)[-1]}" for ref in images]
    return images


def sandbox_alias(repository: str | None) -> tuple[str, str] | None:
    """(what keadm pulled, the name edgecore asks for) when they differ. keadm join pulls
    the pause image from --image-repository, but never sets edged's podSandboxImage, which
    stays kubeedge/pause:3.6 (pkg/apis/componentconfig/edgecore/v1alpha2/default.go@v1.13.0
    line 60, constants.DefaultPodSandboxImage): without that name in docker, dockershim
    pulls it from Docker Hub at the first pod — which an offline board cannot."""
    pulled = join_images("v0", repository)[2]
    return (pulled, PAUSE_IMAGE) if pulled != PAUSE_IMAGE else None


def release_url(version: str, arch: str) -> str:
    return (
        f"https://github.com/kubeedge/kubeedge/releases/download/{version}/"
        f"keadm-{version}-linux-{arch}.tar.gz"
    )


def install_keadm_remedy(version: str, arch: str) -> str:
    name = f"keadm-{version}-linux-{arch}"
    return (
        f"Install keadm {version} for {arch}:\n"
        f"  curl -fLO {release_url(version, arch)}\n"
        f"  tar -xzf {name}.tar.gz && install -m 0755 {name}/keadm/keadm /usr/local/bin/keadm"
    )


# -- what changed after v1.13 (docs/kubeedge-versions.md quotes the source of each) -------
OLDEST, NEWEST = (1, 13), (1, 23)
NEWEST_TAG = "v1.23.1"  # the release to recommend
# The KubeEdge project maintains its three newest minor releases.
MAINTAINED_FROM = (1, 21)
DATA_DIR_OLD, DATA_DIR_NEW = "/var/lib/edged", "/var/lib/kubelet"
CONTAINERD_ENDPOINT = "unix:///run/containerd/containerd.sock"
CRI_DOCKERD_ENDPOINT = "unix:///var/run/cri-dockerd.sock"
CRIO_ENDPOINT = "unix:///var/run/crio/crio.sock"
RUNTIME_ENDPOINTS = {"containerd": CONTAINERD_ENDPOINT, "cri-dockerd": CRI_DOCKERD_ENDPOINT,
                     "crio": CRIO_ENDPOINT}  # fmt: skip
# Releases that must not be installed: (the release that fixes them, why). One source for
# the board's check, its join and upgrade, and the cloud's init and status.
_JOBS_RCE = (
    "CVE-2026-62371 and CVE-2026-62182: anyone who may create a NodeUpgradeJob or "
    "ConfigUpdateJob can run commands on the boards it targets"
)
ADVISORIES = {
    "v1.21.0": ("v1.21.2", _JOBS_RCE), "v1.21.1": ("v1.21.2", _JOBS_RCE),
    "v1.22.0": ("v1.22.2", _JOBS_RCE), "v1.22.1": ("v1.22.2", _JOBS_RCE),
    "v1.23.0": ("v1.23.1", _JOBS_RCE + "; v1.23.1 also fixes path traversal in tar extraction "
                "(commits 657b745, ee78415, ee02dea, 0fe1ea1)"),
}  # fmt: skip


def refuse_advised(tag: str) -> str | None:
    """Why kedge never installs `tag` and what to use instead, or None."""
    found = ADVISORIES.get(tag)
    if found is None:
        return None
    better, why = found
    return f"KubeEdge {tag} has known security holes ({why}); use {better}, which fixes them"


@dataclass(frozen=True)
class Release:
    """One KubeEdge release as kedge must treat it: `keadm join`'s flags, what it pulls,
    where edgecore keeps its data, what it checks before joining."""

    tag: str

    @property
    def minor(self) -> tuple[int, int]:
        return version_tuple(self.tag)[:2]

    @property
    def supported(self) -> bool:
        return OLDEST <= self.minor <= NEWEST

    @property
    def maintained(self) -> bool:
        return self.minor >= MAINTAINED_FROM

    @property
    def docker(self) -> bool:
        """dockershim (docker without cri-dockerd): v1.13 and before."""
        return self.minor <= LAST_DOCKER_RELEASE

    @property
    def runtimetype_flag(self) -> bool:
        # edge/join.go@v1.15.0: "Note it will be removed in 1.16 as the only valid value is 'remote'"
        return self.minor <= (1, 15)

    @property
    def with_mqtt_flag(self) -> bool:
        # edge/join_others.go@v1.20.0 line 83 (deprecated); gone at v1.21.0
        return self.minor <= (1, 20)

    @property
    def pulls_mqtt_by_default(self) -> bool:
        # edge/join.go@v1.15.0 newOption(): WithMQTT = true
        return self.minor <= (1, 15)

    @property
    def data_dir(self) -> str:
        # staging/.../common/constants/default_others.go: DefaultRootDir
        return DATA_DIR_NEW if self.minor >= (1, 20) else DATA_DIR_OLD

    @property
    def background_log(self) -> str:
        """Where keadm sends edgecore's output when it starts it without systemd
        (edge/join_others.go runEdgeCore): /etc/kubeedge/kubeedge/edge/edgecore.log up to
        v1.22 — a directory nothing creates — and /var/log/kubeedge/edgecore.log from v1.23."""
        if self.minor >= (1, 23):
            return "/var/log/kubeedge/edgecore.log"
        return f"{ETC_DIR}/kubeedge/edge/edgecore.log"

    @property
    def checks_node_exists(self) -> bool:
        """join refuses a name cloudcore already knows (edge/join.go@v1.20.0 isNodeExist)."""
        return self.minor >= (1, 20)

    @property
    def has_reset_edge(self) -> bool:
        return self.minor >= (1, 17)

    def join_images(
        self, repository: str | None = None, *, with_mqtt: bool | None = None
    ) -> list[str]:
        """What `keadm join` pulls. From v1.16 only the installation package (and the
        MQTT broker image when asked), through the CRI; the pod sandbox of the copy step
        is the runtime's own pause image, which --image-repository does not change."""
        if self.docker:
            return join_images(self.tag, repository)
        mqtt = self.pulls_mqtt_by_default if with_mqtt is None else with_mqtt
        images = [f"kubeedge/installation-package:{self.tag}"]
        # pkg/image/image.go@v1.14.0 EdgeSet(): all three, whatever --with-mqtt says
        if self.minor <= (1, 14) or (mqtt and self.with_mqtt_flag):
            images.append(MOSQUITTO_IMAGE)
        if self.minor <= (1, 15):
            images.append(PAUSE_IMAGE)
        if repository:
            images = [f"{repository}/{ref.rsplit('/', 1)[-1]}" for ref in images]
        return images

    def board_images(self, repository: str | None = None) -> list[str]:
        """What a board needs besides its join: from v1.16 the cloud's chart runs a
        hostNetwork eclipse-mosquitto pod on every edge node (DaemonSet
        edge-eclipse-mosquitto, charts/cloudcore values.yaml@v1.16.0 to v1.23.1) whose image
        comes from Docker Hub whatever --image-repository says: an offline board ends in
        ImagePullBackOff unless the image is already there."""
        images = self.join_images(repository)
        if self.minor >= (1, 16) and MOSQUITTO_IMAGE not in images:
            images.append(MOSQUITTO_IMAGE)
        return images

    def mqtt_ports(self) -> dict[int, str]:
        """The MQTT ports a joined board's broker takes, and who takes them: up to v1.15
        the container keadm starts (1883 and 9001); from v1.16 the chart's hostNetwork
        eclipse-mosquitto pod (1883 only)."""
        if self.minor <= (1, 15):
            return {
                MQTT_PORT: "the MQTT container keadm starts",
                MQTT_WS_PORT: "the MQTT container keadm starts",
            }
        return {MQTT_PORT: "the eclipse-mosquitto pod the cloud's chart runs on every edge node"}

    def advisory(self) -> tuple[str, str] | None:
        """(the release to use instead, why) for a release that must not be installed."""
        return ADVISORIES.get(self.tag)

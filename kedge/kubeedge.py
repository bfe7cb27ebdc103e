"""What kedge knows about KubeEdge releases: names, ports, paths and images, each as the
KubeEdge source at the release tag has it (docs/kubeedge-1.13.md quotes the lines)."""

from __future__ import annotations

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
EDGECORE_BIN = "/usr/local/bin/edgecore"  # copied out of the installation image
EDGECORE_UNIT = "edgecore.service"
UNIT_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
STATE_DIRS = ("/var/lib/kubeedge", "/var/lib/edged")


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

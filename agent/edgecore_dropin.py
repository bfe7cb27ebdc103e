"""The one line kedge adds to the edgecore unit keadm writes: which docker to talk to.

keadm join never sets edged's `dockerEndpoint` (join.go@v1.13.0 sets only the runtime
type, cgroup driver and runtime endpoints), edgecore copies the empty value into
kubelet's options (edge/pkg/edged/config/config.go line 198), and dockershim then takes
the endpoint from the environment (vendor/k8s.io/kubernetes/pkg/kubelet/dockershim/
libdocker/client.go, getDockerClient: `dockerapi.NewClientWithOpts(dockerapi.FromEnv)`),
which under systemd is the unit's, not keadm's: DOCKER_HOST unset, /var/run/docker.sock.
keadm itself pulls through the DOCKER_HOST kedge gives it. On a board whose docker
listens elsewhere the two would part: keadm pulls into one daemon, edgecore asks
another (or none). A drop-in survives keadm rewriting edgecore.service and is read by
the `systemctl daemon-reload` keadm runs before starting edgecore."""

from __future__ import annotations

import contextlib

from kedge.host import Host
from kedge.kubeedge import EDGECORE_UNIT
from kedge.private_files import write_private
from kedge.wire import Change

STANDARD_DOCKER_SOCKET = "/var/run/docker.sock"
DROPIN = f"/etc/systemd/system/{EDGECORE_UNIT}.d/10-kedge-docker-host.conf"


def dropin_text(socket: str) -> str:
    return (
        "# Written by kedge-agent join; removed by kedge-agent reset.\n"
        "# keadm leaves edgecore's dockerEndpoint empty, so dockershim reads DOCKER_HOST:\n"
        "# this is the docker kedge checked and keadm pulled the images into.\n"
        "[Service]\n"
        f"Environment=DOCKER_HOST=unix://{socket}\n"
    )


def point_edgecore_at(host: Host, socket: str) -> list[Change]:
    """Make edgecore's docker the one at `socket`: a drop-in unless it is the standard
    path (where edgecore looks anyway; a stale drop-in is then removed)."""
    path = host.path(DROPIN)
    if socket == STANDARD_DOCKER_SOCKET:
        return remove_dropin(host)
    wanted = dropin_text(socket)
    if host.read_text(DROPIN) == wanted:
        return []
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    # 0644 like every unit file; nothing secret in it, but write it atomically.
    write_private(path, wanted, mode=0o644)
    return [Change(action="write", target=DROPIN, detail=f"edgecore's DOCKER_HOST=unix://{socket}")]


def remove_dropin(host: Host, *, dry_run: bool = False) -> list[Change]:
    path = host.path(DROPIN)
    if not path.exists():
        return []
    if not dry_run:
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # other drop-ins are the admin's
            path.parent.rmdir()
    return [Change(action="remove", target=DROPIN, done=not dry_run)]


async def edgecore_docker_host(host: Host) -> str | None:
    """The DOCKER_HOST systemd gives edgecore (None: unset, or no systemctl to ask)."""
    props = await host.unit_properties(EDGECORE_UNIT, "Environment", timeout=10) or {}
    found = None
    for item in props.get("Environment", "").split():
        if item.startswith("DOCKER_HOST="):
            found = item.removeprefix("DOCKER_HOST=")  # the last assignment wins
    return found

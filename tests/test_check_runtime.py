"""The CRI runtime checks and fixes against a real containerd (Debian's 1.6) on a fixture
board: the CRI answered or refused ("unknown service runtime.v1.RuntimeService"), runc's
cgroup driver against the join's and its repair, the sandbox image, the CNI config."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import containerd_config
from tests.conftest import AgentRunner, check_one
from tests.harness.board import Board
from tests.harness.containerd import Containerd, config_v2
from tests.harness.dockerd import Dockerd, seed_registry
from tests.harness.registry import Registry

AARCH64_ELF = b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x02\x00\xb7\x00" + b"\0" * 44
pytestmark = pytest.mark.skipif(shutil.which("containerd") is None, reason="needs containerd")


@pytest.fixture
def containerd(board: Board, tmp_path: Path) -> Iterator[Containerd]:
    board.install_systemd()
    c = Containerd(board, tmp_path / "containerd")
    yield c
    c.stop()


def configure(board: Board, c: Containerd, **extra: Any) -> None:
    board.configure({"kubeedge_version": "v1.23.1", "runtime": "containerd",
                     "remote_runtime_endpoint": c.endpoint, **extra})  # fmt: skip


def test_a_containerd_that_serves_the_cri_passes(
    board: Board, containerd: Containerd, agent: AgentRunner
) -> None:
    containerd.start(config_v2(containerd.workdir, systemd_cgroup=False))
    configure(board, containerd)
    result = check_one(agent, board, "cri")
    assert result.status == "pass", result.summary
    assert result.summary.startswith("containerd 1.")
    assert result.details["cri_api"] == "v1"
    docker = check_one(agent, board, "docker")
    assert (docker.status, docker.summary) == (
        "skip", "runtime is containerd: docker is not used (the cri check covers it)")  # fmt: skip


def test_containerd_io_without_its_cri_plugin_is_named_and_fixed(
    board: Board, containerd: Containerd, agent: AgentRunner
) -> None:
    containerd.start(config_v2(containerd.workdir, systemd_cgroup=None, cri=False))
    configure(board, containerd)
    result = check_one(agent, board, "cri")
    assert result.status == "fail"
    assert "unknown service runtime.v1.RuntimeService" in result.summary
    assert 'remove "cri" from disabled_plugins' in result.remedy
    run = agent(board, "fix", "--yes", "--only", "cri")
    assert run.rc == 0, run.out + run.err
    assert not containerd_config.parse(board.path(containerd_config.PATH).read_text()).cri_disabled
    assert board.path(containerd_config.PATH + ".kedge-backup").exists()
    assert check_one(agent, board, "cri").status == "pass"


def test_a_cgroup_driver_mismatch_is_named_with_keadms_words_and_fixed(
    board: Board, containerd: Containerd, agent: AgentRunner
) -> None:
    """containerd set to systemd (as most install guides say) against keadm's default
    cgroupfs: keadm join fails at "copy resources" (tests/kubeedge_sim/keadm_cri.py says
    why). fix sets it, keeps the rest, restarts, asks again."""
    containerd.start(config_v2(containerd.workdir, systemd_cgroup=True))
    configure(board, containerd, cgroup_driver="cgroupfs")
    before = board.path(containerd_config.PATH).read_text()
    result = check_one(agent, board, "runtime-cgroup")
    assert result.status == "fail"
    assert (
        'expected cgroupsPath to be of format "slice:prefix:name" for systemd cgroups'
        in result.summary
    )
    dry = agent(board, "fix", "--dry-run", "--only", "runtime-cgroup")
    assert dry.rc == 0, dry.out + dry.err
    assert board.path(containerd_config.PATH).read_text() == before
    run = agent(board, "fix", "--yes", "--only", "runtime-cgroup", "--json")
    assert run.rc == 0, run.out + run.err
    after = board.path(containerd_config.PATH).read_text()
    assert containerd_config.parse(after).systemd_cgroup is False
    assert [ln for ln in after.splitlines() if "SystemdCgroup" not in ln] == [
        ln for ln in before.splitlines() if "SystemdCgroup" not in ln]  # fmt: skip
    assert check_one(agent, board, "runtime-cgroup").status == "pass"
    again = agent(board, "fix", "--yes", "--only", "runtime-cgroup")
    assert again.rc == 0
    assert board.path(containerd_config.PATH).read_text() == after  # idempotent


def test_a_missing_sandbox_image_warns_and_no_cni_config_fails(
    board: Board, containerd: Containerd, agent: AgentRunner
) -> None:
    containerd.start(config_v2(containerd.workdir, systemd_cgroup=False,
                               sandbox_image="registry.example.invalid/pause:3.9"))  # fmt: skip
    configure(board, containerd)
    sandbox = check_one(agent, board, "sandbox-image")
    assert sandbox.status == "warn"
    assert sandbox.summary.startswith("registry.example.invalid/pause:3.9 is not in containerd")
    cni = check_one(agent, board, "cni")
    assert cni.status == "fail"
    assert cni.summary == ('no CNI config in /etc/cni/net.d: the node would stay NotReady '
                           '("cni plugin not initialized")')  # fmt: skip


def test_cni_plugins_must_exist_for_this_boards_architecture(
    board: Board, containerd: Containerd, agent: AgentRunner
) -> None:
    containerd.start(config_v2(containerd.workdir, systemd_cgroup=False))
    configure(board, containerd)
    board.write("/etc/cni/net.d/10-bridge.conflist",
                '{"cniVersion": "1.0.0", "name": "kedge", "plugins": '
                '[{"type": "bridge"}, {"type": "portmap"}]}')  # fmt: skip
    missing = check_one(agent, board, "cni")
    assert (missing.status, missing.details["missing"]) == ("fail", ["bridge", "portmap"])
    board.write("/opt/cni/bin/bridge", Path("/bin/true").read_bytes(), 0o755)
    # an aarch64 ELF header: what the reference install's amd64-only fetch gets wrong the other way
    board.write(
        "/opt/cni/bin/portmap",
        b"\x7fELF\x02\x01\x01" + b"\0" * 9 + b"\x02\x00\xb7\x00" + b"\0" * 44,
        0o755,
    )
    foreign = check_one(agent, board, "cni")
    assert (foreign.status, foreign.details["wrong_arch"]) == ("fail", ["portmap"])
    assert "built for another architecture than amd64: portmap" in foreign.summary


def test_the_releases_images_are_pulled_through_the_runtime(
    board: Board, containerd: Containerd, agent: AgentRunner, registry: Registry,
    dockerd_systemd: Dockerd,
) -> None:  # fmt: skip
    """v1.23.1's join pulls only its installation package, through the CRI, and the
    cloud's chart runs eclipse-mosquitto on every edge node from Docker Hub: the check asks
    containerd for both, fix pulls them for real through containerd's mirror setting (the
    loopback registry as Docker Hub), and the sandbox image likewise."""
    seed_registry(dockerd_systemd, registry.address,
                  ["kubeedge/installation-package:v1.23.1", "kubeedge/pause:3.6",
                   "eclipse-mosquitto:1.6.15"])  # fmt: skip
    containerd.start(config_v2(containerd.workdir, systemd_cgroup=False, mirror=registry.url,
                               sandbox_image="kubeedge/pause:3.6"))  # fmt: skip
    configure(board, containerd)
    images = check_one(agent, board, "runtime-images")
    assert (images.status, images.details["missing"]) == (
        "warn", ["kubeedge/installation-package:v1.23.1", "eclipse-mosquitto:1.6.15"])  # fmt: skip
    assert check_one(agent, board, "sandbox-image").status == "warn"
    run = agent(board, "fix", "--yes", "--only", "runtime-images,sandbox-image", "--json")
    assert run.rc == 0, run.out + run.err
    pulled = [c["target"] for c in json.loads(run.out)["changes"] if c["action"] == "pull"]
    assert sorted(pulled) == ["eclipse-mosquitto:1.6.15", "kubeedge/installation-package:v1.23.1",
                              "kubeedge/pause:3.6"]  # fmt: skip
    assert check_one(agent, board, "runtime-images").status == "pass"
    assert check_one(agent, board, "sandbox-image").status == "pass"


def plugin_archive(path: Path, elf: bytes) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name in ("bridge", "host-local", "portmap", "loopback", "../escape"):
            info = tarfile.TarInfo(f"./{name}")
            info.size, info.mode = len(elf), 0o755
            tar.addfile(info, io.BytesIO(elf))
        link = tarfile.TarInfo("./evil")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
        tar.addfile(link)
    return path


def test_cni_plugins_are_installed_from_an_archive_for_this_architecture(
    board: Board, containerd: Containerd, agent: AgentRunner, tmp_path: Path
) -> None:
    containerd.start(config_v2(containerd.workdir, systemd_cgroup=False))
    configure(board, containerd)
    assert check_one(agent, board, "cni").status == "fail"
    arm = plugin_archive(tmp_path / "cni-plugins-linux-arm64.tgz", AARCH64_ELF)
    wrong = agent(board, "fix", "--yes", "--only", "cni", "--cni-archive", str(arm))
    assert wrong.rc == 1
    assert "bridge is built for arm64, this board is amd64" in wrong.out + wrong.err
    assert not board.path("/opt/cni/bin/bridge").exists()
    right = plugin_archive(tmp_path / "cni-plugins-linux-amd64.tgz", Path("/bin/true").read_bytes())
    run = agent(board, "fix", "--yes", "--only", "cni", "--cni-archive", str(right))
    assert run.rc == 0, run.out + run.err
    assert sorted(board.path("/opt/cni/bin").iterdir()) == [
        board.path(f"/opt/cni/bin/{n}") for n in ("bridge", "host-local", "loopback", "portmap")]  # fmt: skip
    assert not board.path("/opt/cni/escape").exists()
    assert not board.path("/opt/cni/bin/evil").exists()
    assert check_one(agent, board, "cni").status in (
        "pass",
        "warn",
    )  # warn: containerd rereads later


def test_a_cri_board_without_the_memory_cgroup_is_stopped_before_the_join(
    board: Board, containerd: Containerd, agent: AgentRunner
) -> None:
    """Issue 26, item 5 (1): keadm join reports success, then edgecore's kubelet stops at
    its system validation (container_manager_linux.go@v1.23.1, vendored). Until now only
    docker boards were asked."""
    containerd.start(config_v2(containerd.workdir, systemd_cgroup=False))
    configure(board, containerd)
    board.write("/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io pids\n")
    board.write("/boot/armbianEnv.txt", "verbosity=1\n")
    result = check_one(agent, board, "runtime-cgroup")
    assert result.status == "fail"
    assert result.summary.startswith(
        "the kernel's memory cgroup is disabled (/sys/fs/cgroup/cgroup.controllers)"
    )
    assert "Following Cgroup subsystem not mounted: [memory]" in result.summary
    assert "extraargs= line in /boot/armbianEnv.txt" in result.remedy
    board.write("/sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n")
    assert check_one(agent, board, "runtime-cgroup").status == "pass"


@pytest.mark.parametrize(
    ("printed", "pause"),
    [("cri-dockerd 0.3.17 (0a3a4e5)", "registry.k8s.io/pause:3.10"),
     ("cri-dockerd 0.3.16 (9a4c8a6)", "registry.k8s.io/pause:3.9"),
     ("cri-dockerd 0.3.12 (c6e5d5c)", "registry.k8s.io/pause:3.9"),
     ("something else", "registry.k8s.io/pause:3.10")],
)  # fmt: skip
async def test_cri_dockerds_default_pause_image_follows_its_release(
    board: Board, printed: str, pause: str
) -> None:
    """Issue 26, item 4: pause 3.10 from cri-dockerd v0.3.17, 3.9 for v0.3.12-v0.3.16,
    read from `cri-dockerd --version` when no unit sets --pod-infra-container-image."""
    from agent import cri_dockerd_unit
    from kedge.host import Host

    board.write("/usr/bin/cri-dockerd", f"#!/bin/sh\necho '{printed}'\n", 0o755)
    host = Host(board.root, search_path=["/usr/bin"])
    default = await cri_dockerd_unit.default_sandbox(host)
    assert default == pause
    assert cri_dockerd_unit.sandbox_image(host, default) == pause
    board.write(cri_dockerd_unit.UNITS[1], "[Service]\nExecStart=/usr/bin/cri-dockerd "
                "--pod-infra-container-image=mirror.local/pause:3.8\n")  # fmt: skip
    assert cri_dockerd_unit.sandbox_image(host, default) == "mirror.local/pause:3.8"


def test_the_non_breaking_cgroup_direction_only_warns(
    board: Board, containerd: Containerd, agent: AgentRunner
) -> None:
    """Issue 26, item 4: runc on cgroupfs with the join on systemd does not fail the join
    (pods start, their limits do not hold): a warning, not a block."""
    containerd.start(config_v2(containerd.workdir, systemd_cgroup=False))
    configure(board, containerd, cgroup_driver="systemd")
    result = check_one(agent, board, "runtime-cgroup")
    assert result.status == "warn"
    assert result.summary.startswith(
        "containerd's runc uses cgroupfs but the join passes --cgroupdriver=systemd"
    )


@pytest.mark.parametrize(
    ("containerd", "release", "adopts"),
    [("2.0.2", "v1.23.1", True), ("v2.1.0", "v1.22.2", True), ("1.7.24", "v1.23.1", False),
     ("2.0.2", "v1.21.2", False)],
)  # fmt: skip
def test_edgecore_adopts_containerd_2s_driver_from_v1_22(
    containerd: str, release: str, adopts: bool
) -> None:
    """containerd 2 answers RuntimeConfig; edgecore from v1.22 (Kubernetes 1.31 vendored,
    KubeletCgroupDriverFromCRI on by default) uses its answer: no block there."""
    from types import SimpleNamespace
    from typing import cast

    from agent.checks.context import CheckContext
    from agent.checks.runtime import _adopts_runtime_driver

    ctx = cast(CheckContext, SimpleNamespace(settings=SimpleNamespace(kubeedge_version=release)))
    assert _adopts_runtime_driver(ctx, containerd) is adopts


def test_without_a_running_systemd_the_fix_writes_and_says_who_must_restart(
    board: Board, containerd: Containerd, agent: AgentRunner
) -> None:
    """Issue 26, item 6: systemctl installed but no systemd running (a container, another
    init) — the fix writes the config and says containerd must be restarted by whatever
    runs it, instead of trusting a systemctl whose systemd is not there."""
    containerd.start(config_v2(containerd.workdir, systemd_cgroup=True))
    configure(board, containerd, cgroup_driver="cgroupfs")
    board.path("/run/systemd/system").rmdir()
    run = agent(board, "fix", "--yes", "--only", "runtime-cgroup", "--json")
    assert run.rc == 1, run.out + run.err
    assert "no systemd runs here to restart containerd.service" in run.out
    assert not containerd_config.parse(
        board.path(containerd_config.PATH).read_text()
    ).systemd_cgroup

"""The Debian packages and systemd units, checked with Debian's own tools.

Marked `packaging` (skip locally with -m "not packaging"); CI runs them. The wheel
cache under /var/cache/kedge-build survives between runs on the same machine.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from agent.firstboot_state import PENDING_FILE
from agent.settings import AgentSettings
from kedge import seed
from kedge.elf import elf_machine
from tests.conftest import REPO, need
from tests.harness.rootfs import CACHE, bookworm_chroot

pytestmark = pytest.mark.packaging
UNITS = {"kedge-agent": 4.0, "kedge-cloud-api": 2.0}  # exposure limits from the packaging issue


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_unit_verifies_cleanly_and_is_hardened(unit: str, tmp_path: Path) -> None:
    need("systemd-analyze")
    text = (REPO / "systemd" / f"{unit}.service").read_text()
    # verify insists that ExecStart exists; the package installs /usr/bin/<unit>.
    copy = tmp_path / f"{unit}.service"
    copy.write_text(text.replace(f"/usr/bin/{unit}", "/bin/true"))
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", str(copy)],
                              capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", security.stdout)
    assert found, security.stdout[-500:]
    assert float(found[1]) <= UNITS[unit]


def test_the_first_boot_unit_verifies_and_runs_only_with_a_seed_or_an_unfinished_boot(
    tmp_path: Path,
) -> None:
    need("systemd-analyze")
    text = (REPO / "systemd" / "kedge-firstboot.service").read_text()
    copy = tmp_path / "kedge-firstboot.service"
    copy.write_text(text.replace("/usr/bin/kedge-agent", "/bin/true"))
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", str(copy)],
                            capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert (verify.returncode, verify.stdout + verify.stderr) == (0, "")
    conditions = [
        ln.split("|", 1)[1] for ln in text.splitlines() if ln.startswith("ConditionPathExists=|")
    ]
    assert conditions == [*seed.SEED_PATHS, "/var/lib/kedge-agent/" + PENDING_FILE]
    assert "RestartPreventExitStatus=2" in text  # blocked: a person acts, no retry loop


def test_agent_unit_keeps_what_psutil_and_the_watchdog_need() -> None:
    unit = (REPO / "systemd" / "kedge-agent.service").read_text()
    assert "Type=notify" in unit
    assert "WatchdogSec=" in unit
    assert "\nProcSubset=pid" not in unit  # psutil needs /proc/stat, /proc/meminfo
    assert "KillMode=mixed" in unit


def shipped_config(name: str) -> dict[str, Any]:
    """A shipped example config with its commented-out settings switched on."""
    text = (REPO / "packaging" / name).read_text()
    return tomllib.loads(
        "\n".join(re.sub(r"^#(?=[\[a-z])", "", line) for line in text.splitlines())
    )


def test_shipped_config_documents_every_setting_validly() -> None:
    data = shipped_config("agent.toml")
    AgentSettings(**data)  # every key known, every example value valid
    # secrets shown as a placeholder, never as a value someone could switch on
    documented = set(data) | {"token", "command_key"}
    assert documented == set(AgentSettings.model_fields), (
        set(AgentSettings.model_fields) ^ documented
    )


def test_shipped_cloud_api_config_is_valid() -> None:
    from cloud_api.settings import CloudSettings, FleetSettings
    from kedge.broker import BrokerSettings

    data = shipped_config("cloud-api.toml")
    CloudSettings(**data)
    assert set(data) == set(CloudSettings.model_fields)
    assert set(data["mqtt"]) == set(BrokerSettings.model_fields)  # the README promises all
    assert set(data["board_mqtt"]) == set(BrokerSettings.model_fields)
    assert set(data["fleet"]) == set(FleetSettings.model_fields)


def test_four_packages_are_built(debs: dict[str, Path]) -> None:
    assert sorted(debs) == [
        "kedge-agent_amd64",
        "kedge-agent_arm64",
        "kedge-cloud-api_amd64",
        "kedge-cloud-api_arm64",
    ]


def test_lintian_has_no_errors_or_warnings(debs: dict[str, Path]) -> None:
    out = subprocess.run(["lintian", "--pedantic", *map(str, debs.values())],
                         capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    problems = [line for line in out.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert problems == []


def unpack(deb: Path, dest: Path) -> Path:
    subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True, timeout=120)
    return dest


def test_arm64_payload_is_aarch64_and_small(debs: dict[str, Path], tmp_path: Path) -> None:
    deb = debs["kedge-agent_arm64"]
    assert deb.stat().st_size < 5 * 1024 * 1024
    root = unpack(deb, tmp_path / "arm64")
    libs = list((root / "usr/lib/kedge-agent").rglob("*.so"))
    assert len(libs) >= 10
    assert {elf_machine(lib) for lib in libs} == {0xB7}  # EM_AARCH64, every one
    for module in ("pydantic_core", "aiohttp", "frozenlist", "multidict", "yarl", "psutil"):
        assert any(module in str(lib) for lib in libs), module


def test_agent_package_layout_conffile_and_scripts(debs: dict[str, Path], tmp_path: Path) -> None:
    deb = debs["kedge-agent_amd64"]
    root = unpack(deb, tmp_path / "amd64")
    for path in ("usr/bin/kedge-agent", "etc/kedge/agent.toml", "lib/systemd/system/kedge-agent.service",
                 "lib/systemd/system/kedge-firstboot.service", "usr/share/doc/kedge-agent/firstboot.md.gz",
                 "usr/share/man/man8/kedge-agent.8.gz", "usr/share/doc/kedge-agent/copyright",
                 "usr/lib/kedge-agent/agent/cli.py", "usr/lib/kedge-agent/pydantic_settings/__init__.py"):  # fmt: skip
        assert (root / path).exists(), path
    control = tmp_path / "control"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(control)], check=True, timeout=60)
    assert (control / "conffiles").read_text().split() == ["/etc/kedge/agent.toml"]
    postrm = (control / "postrm").read_text()
    assert "rm -rf /var/lib/kedge-agent" in postrm
    assert "deb-systemd-helper purge" in postrm
    fields = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends", "Suggests"], capture_output=True, text=True,
                            timeout=60, check=True).stdout  # fmt: skip
    assert "python3.11" in fields
    assert "Suggests: docker.io" in fields


def test_the_packaged_agent_runs_on_this_machines_python(
    debs: dict[str, Path], tmp_path: Path
) -> None:
    root = unpack(debs["kedge-agent_amd64"], tmp_path / "run")
    launcher = (
        (root / "usr/bin/kedge-agent")
        .read_text()
        .replace("/usr/lib/kedge-agent", str(root / "usr/lib/kedge-agent"))
    )
    (root / "kedge-agent").write_text(launcher)
    out = subprocess.run(["/usr/bin/python3", str(root / "kedge-agent"), "--version"],
                         capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert (out.returncode, out.stdout.strip()) == (0, "kedge-agent 0.1.0")


def arm64_rootfs(dest: Path) -> Path:
    """Debian's own arm64 Python (and what it needs), unpacked: no binfmt, no chroot."""
    debs = CACHE / "arm64-debs"
    if not any(debs.glob("*.deb")):
        debs.mkdir(parents=True, exist_ok=True)
        roots = ["python3.11-minimal:arm64", "libpython3.11-stdlib:arm64", "libstdc++6:arm64"]
        listing = subprocess.run(
            ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
             "--no-breaks", "--no-replaces", "--no-enhances", *roots],
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout  # fmt: skip
        names = sorted(
            {line for line in listing.splitlines() if line.endswith(":arm64") and line[0].isalnum()}
        )
        subprocess.run(
            ["apt-get", "download", *names], cwd=debs, check=True, timeout=600, capture_output=True
        )
    for deb in debs.glob("*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(dest)], check=True, timeout=120)
    return dest


QEMU_PROBE = """
import sys
sys.path.insert(0, "/usr/lib/kedge-agent")
import platform, frozenlist, multidict, yarl, psutil, pydantic_core
from aiohttp import http_parser
print(platform.machine())
print(frozenlist.FrozenList.__module__, multidict.MultiDict.__module__, yarl._quoting._Quoter.__module__)
print(http_parser.HttpRequestParser.__module__, pydantic_core._pydantic_core.__name__, psutil._psplatform.cext.__name__)
"""


def test_arm64_payload_runs_under_qemu(debs: dict[str, Path], tmp_path: Path) -> None:
    need("qemu-aarch64-static", "apt-get")
    root = arm64_rootfs(tmp_path / "rootfs")
    unpack(debs["kedge-agent_arm64"], root)
    python = ["qemu-aarch64-static", "-L", str(root), str(root / "usr/bin/python3.11"), "-I"]
    probe = subprocess.run(
        [*python, "-c", QEMU_PROBE], capture_output=True, text=True, timeout=300, check=False
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    # C extensions really loaded, not their pure-Python fallbacks.
    assert probe.stdout.split() == [
        "aarch64", "frozenlist._frozenlist", "multidict._multidict", "yarl._quoting_c",
        "aiohttp._http_parser", "pydantic_core._pydantic_core", "psutil._psutil_linux",
    ]  # fmt: skip
    version = subprocess.run([*python, str(root / "usr/bin/kedge-agent"), "--version"],
                             capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert version.stdout.strip() == "kedge-agent 0.1.0", version.stderr[-2000:]
    board = tmp_path / "board"
    (board / "etc").mkdir(parents=True)
    (board / "etc/hostname").write_text("rk3000-board1\n")
    (tmp_path / "agent.toml").write_text("ntp_servers = []\n")
    check = subprocess.run([*python, str(root / "usr/bin/kedge-agent"), "check", "--json", "--only",
                            "arch,node-name,leftovers", "--root", str(board), "--config", str(tmp_path / "agent.toml")],
                           capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    report = json.loads(check.stdout)
    assert report["schema"] == 1
    assert {c["id"]: c["status"] for c in report["checks"]} == {
        "arch": "pass",
        "node-name": "pass",
        "leftovers": "pass",
    }
    arch = next(c for c in report["checks"] if c["id"] == "arch")
    assert arch["details"]["machine"] == "aarch64"  # qemu reports the board's architecture


def chroot(
    root: Path, *argv: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DEBIAN_FRONTEND": "noninteractive",
        **(env or {}),
    }
    return subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True, timeout=600, check=False,
                          env=full)  # fmt: skip


def rebuild_with_version(deb: Path, version: str, out: Path) -> Path:
    """The same package as a newer build, for the upgrade path."""
    tree = out / "tree"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True, timeout=120)
    control = tree / "DEBIAN/control"
    control.write_text(
        re.sub(r"^Version: .*$", f"Version: {version}", control.read_text(), flags=re.M)
    )
    target = out / deb.name.replace("_0.1.0_", f"_{version}_")
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(target)], check=True, timeout=300,
                   capture_output=True)  # fmt: skip
    shutil.rmtree(tree)
    return target


IGNORED = ("/proc", "/sys", "/dev", "/run", "/tmp", "/srv/kedge", "/var/lib/apt", "/var/cache", "/var/log",
           "/var/lib/dpkg", "/etc/apt", "/etc/ld.so.cache", "/var/lib/systemd/deb-systemd")  # fmt: skip


def files(root: Path) -> set[str]:
    out = set()
    for path in root.rglob("*"):
        rel = "/" + str(path.relative_to(root))
        if not rel.startswith(IGNORED):
            out.add(rel)
    return out


def publish(root: Path, repo_from: Path, tmp: Path) -> None:
    subprocess.run([str(REPO / "packaging" / "repo"), "--from", str(repo_from), "--out", str(tmp / "repo")],
                   check=True, timeout=300, capture_output=True)  # fmt: skip
    shutil.rmtree(root / "srv/kedge", ignore_errors=True)
    shutil.copytree(tmp / "repo", root / "srv/kedge")
    (root / "etc/apt/keyrings").mkdir(parents=True, exist_ok=True)
    shutil.copy(tmp / "repo/kedge-archive-keyring.gpg", root / "etc/apt/keyrings/kedge.gpg")
    (root / "etc/apt/sources.list.d/kedge.sources").write_text(
        "Types: deb\nURIs: file:/srv/kedge\nSuites: bookworm\nComponents: main\n"
        "Signed-By: /etc/apt/keyrings/kedge.gpg\n"
    )
    update = chroot(root, "apt-get", "update", "-o", "Dir::Etc::sourcelist=/dev/null")
    assert update.returncode == 0, update.stdout + update.stderr


def test_install_upgrade_remove_purge_in_a_bookworm_chroot(
    debs: dict[str, Path], tmp_path: Path
) -> None:
    need("chroot", "tar")
    root = bookworm_chroot(tmp_path / "chroot")
    before = files(root)
    first = tmp_path / "v1"
    first.mkdir()
    for name in ("kedge-agent_amd64", "kedge-cloud-api_amd64"):
        shutil.copy(debs[name], first)
    publish(root, first, tmp_path / "pub1")
    install = chroot(root, "apt-get", "install", "-y", "kedge-agent", "kedge-cloud-api")
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    installed = (
        "usr/bin/kedge-agent",
        "etc/kedge/agent.toml",
        "lib/systemd/system/kedge-agent.service",
        "etc/systemd/system/multi-user.target.wants/kedge-agent.service",
        "etc/systemd/system/multi-user.target.wants/kedge-firstboot.service",
        "usr/bin/kedge-cloud-api",
    )
    for path in installed:
        assert (root / path).exists() or (root / path).is_symlink(), (
            path
        )  # the link points into the chroot
    for unit in ("kedge-agent", "kedge-firstboot", "kedge-cloud-api"):
        verify = chroot(
            root, "systemd-analyze", "verify", "--man=no", f"/lib/systemd/system/{unit}.service"
        )
        assert (verify.returncode, verify.stdout + verify.stderr) == (0, ""), unit
    check = chroot(root, "kedge-agent", "check", "--json", "--only", "node-name,leftovers")
    assert json.loads(check.stdout)["schema"] == 1, check.stderr
    conffile = root / "etc/kedge/agent.toml"
    conffile.write_text(conffile.read_text() + 'node_name = "edited-by-hand"\n')

    second = tmp_path / "v2"
    second.mkdir()
    for name in ("kedge-agent_amd64", "kedge-cloud-api_amd64"):
        rebuild_with_version(debs[name], "0.1.0+2", second)
    publish(root, second, tmp_path / "pub2")
    upgrade = chroot(root, "apt-get", "install", "-y", "kedge-agent", "kedge-cloud-api")
    assert upgrade.returncode == 0, upgrade.stdout[-2000:] + upgrade.stderr[-2000:]
    assert "0.1.0+2" in chroot(root, "dpkg-query", "-W", "kedge-agent").stdout
    assert 'node_name = "edited-by-hand"' in conffile.read_text()  # kept, without a prompt

    remove = chroot(root, "apt-get", "remove", "-y", "kedge-agent", "kedge-cloud-api")
    assert remove.returncode == 0, remove.stderr
    assert conffile.exists()
    assert not (root / "usr/lib/kedge-agent").exists()
    purge = chroot(root, "apt-get", "purge", "-y", "kedge-agent", "kedge-cloud-api")
    assert purge.returncode == 0, purge.stderr
    assert files(root) - before == set()


def test_one_command_also_signs_a_repository(debs: dict[str, Path]) -> None:
    repo = REPO / "dist" / "repo"
    release = repo / "dists/bookworm/Release"
    assert "Architectures: amd64 arm64" in release.read_text()
    for name in ("InRelease", "Release.gpg"):
        assert (release.parent / name).is_file()
    verified = subprocess.run(["gpgv", "--keyring", str(repo / "kedge-archive-keyring.gpg"),
                               str(release.parent / "InRelease")], capture_output=True, text=True, timeout=60,
                              check=False)  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    packages = (repo / "dists/bookworm/main/binary-arm64/Packages").read_text()
    assert "Package: kedge-agent" in packages
    assert "Package: kedge-cloud-api" in packages


def test_build_names_every_missing_tool_and_the_fix(tmp_path: Path) -> None:
    # A PATH with only a shell and the basics: no dpkg-buildpackage, dh, dh_python3 or gpg.
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("sh", "dirname", "sed", "grep", "cat"):
        (bare / tool).symlink_to(shutil.which(tool) or f"/bin/{tool}")
    out = subprocess.run([str(REPO / "packaging" / "build"), "--arch", "amd64"], capture_output=True,
                         text=True, timeout=60, check=False, env={"KEDGE_BUILD_PATH": str(bare)})  # fmt: skip
    assert out.returncode == 2, out.stderr
    first, second = out.stderr.splitlines()
    assert first == "packaging/build: missing build tools: dpkg-dev debhelper dh-python gnupg"
    assert second.startswith("  scripts/setup-host installs them all")

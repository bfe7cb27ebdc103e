"""docker and cgroup-driver: the daemon edgecore will drive, and how it uses cgroups."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agent.checks.context import CheckContext
from agent.checks.facts import CgroupFacts
from agent.checks.registry import Outcome, check, failed, not_used, passed, warned
from kedge.errors import DockerError, DockerUnavailable
from kedge.kubeedge import EDGECORE_YAML, edgecore_cgroup_driver

DAEMON_JSON = "/etc/docker/daemon.json"
DOCKER_RUNTIMES = ("docker", "cri-dockerd")  # docker underneath: its daemon, driver and images
MB = 1024 * 1024


def read_daemon_json(ctx: CheckContext) -> tuple[dict[str, Any] | None, str | None]:
    """(parsed daemon.json or None if absent, error text if it is not usable)."""
    text = ctx.host.read_text(DAEMON_JSON)
    if text is None:
        return None, None
    if not text.strip():
        return {}, None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        return None, f"{DAEMON_JSON}: line {exc.lineno} column {exc.colno}: {exc.msg}"
    if not isinstance(data, dict):
        return None, f"{DAEMON_JSON}: top level must be a JSON object"
    return data, None


def daemon_json_driver(data: dict[str, Any] | None) -> str | None:
    for opt in (data or {}).get("exec-opts") or []:
        if isinstance(opt, str) and opt.replace(" ", "").startswith("native.cgroupdriver="):
            return opt.split("=", 1)[1].strip()
    return None


def _unavailable_remedy(ctx: CheckContext, exc: DockerUnavailable) -> str:
    sock = ctx.settings.docker_socket
    if not Path(sock).exists():
        return (
            f"No socket at {sock}. Install Docker (apt install docker.io) and start it "
            "(systemctl enable --now docker), or set docker_host / DOCKER_HOST to its socket."
        )
    return (
        "Start Docker and read why it stopped: systemctl restart docker; "
        "journalctl -u docker -e. If the service will not start, `dockerd --debug` in a "
        "terminal prints the reason (often a bad /etc/docker/daemon.json or storage driver)."
    )


@check(
    "docker",
    "Docker daemon",
    "Docker answers on its socket, its config is valid and it has disk space.",
)
async def docker(ctx: CheckContext) -> Outcome:
    if ctx.settings.runtime not in DOCKER_RUNTIMES:
        return not_used(
            f"runtime is {ctx.settings.runtime}: docker is not used (the cri check covers it)"
        )
    data, json_error = read_daemon_json(ctx)
    details: dict[str, Any] = {"socket": ctx.settings.docker_socket}
    if json_error:
        return failed(
            json_error,
            f"Fix the JSON in {DAEMON_JSON} (dockerd refuses to start with it); "
            f"python3 -m json.tool {DAEMON_JSON} shows the error again.",
            **details,
        )
    try:
        await ctx.docker.ping()
        version = await ctx.docker.version()
        info = await ctx.docker_info()
    except DockerUnavailable as exc:
        return failed(f"Docker does not answer: {exc}", _unavailable_remedy(ctx, exc), **details)
    except DockerError as exc:
        return failed(f"Docker answered with an error: {exc}", "journalctl -u docker -e", **details)
    details |= {
        "server_version": version.get("Version"),
        "api_version": version.get("ApiVersion"),
        "data_root": info.get("DockerRootDir"),
        "storage_driver": info.get("Driver"),
        "cgroup_driver": info.get("CgroupDriver"),
    }
    summary = f"Docker {details['server_version']} (API {details['api_version']})"
    root = info.get("DockerRootDir")
    if root:
        usage = ctx.host.disk_usage(Path(root))
        free_mb = usage.free // MB
        details["data_root_free_mb"] = free_mb
        summary += f", {free_mb} MB free in {root}"
        need = ctx.settings.thresholds.docker_min_free_mb
        if free_mb < need:
            return failed(
                f"{summary}; at least {need} MB are needed for KubeEdge's images",
                f"Free space in {root} (docker system prune removes unused images), or move "
                'Docker\'s data root to a bigger disk with "data-root" in /etc/docker/daemon.json.',
                **details,
            )
    configured = daemon_json_driver(data)
    running = info.get("CgroupDriver")
    if configured and running and configured != running:
        return warned(
            f"{summary}; {DAEMON_JSON} asks for cgroup driver {configured} but the running "
            f"daemon uses {running}",
            "Docker was not restarted after daemon.json changed: systemctl restart docker",
            **details,
        )
    return passed(summary, **details)


CMDLINE_FILES = (
    ("/boot/firmware/cmdline.txt", "append to its single line"),
    ("/boot/cmdline.txt", "append to its single line"),
    ("/boot/armbianEnv.txt", "add to the extraargs= line"),
    ("/boot/extlinux/extlinux.conf", "add to the append line"),
    ("/etc/default/grub", "add to GRUB_CMDLINE_LINUX, then run update-grub"),
)


def memory_cgroup(ctx: CheckContext) -> tuple[bool | None, str]:
    """(memory controller enabled?, where that was read); None when nothing tells."""
    controllers = ctx.host.read_text("/sys/fs/cgroup/cgroup.controllers")
    if controllers is not None and controllers.strip():
        return "memory" in controllers.split(), "/sys/fs/cgroup/cgroup.controllers"
    table = ctx.host.read_text("/proc/cgroups")
    if table is not None:
        for line in table.splitlines():
            fields = line.split()
            if len(fields) >= 4 and fields[0] == "memory":
                return fields[3] == "1", "/proc/cgroups"
        return False, "/proc/cgroups"
    return None, ""


def cmdline_remedy(ctx: CheckContext) -> str:
    args = "cgroup_enable=memory cgroup_memory=1"
    for path, how in CMDLINE_FILES:
        if ctx.host.exists(path):
            return f"Enable the memory cgroup: {how} in {path}: {args}, then reboot."
    return f"Enable the memory cgroup: add {args} to the kernel command line of the bootloader, then reboot."


@check(
    "cgroup-driver",
    "cgroup driver and memory cgroup",
    "edgecore will use docker's cgroup driver, and the kernel's memory cgroup is enabled.",
    needs=("docker",),
)
async def cgroup_driver(ctx: CheckContext) -> Outcome:
    info = await ctx.docker_info()
    docker_driver = str(info.get("CgroupDriver") or "cgroupfs")
    setting = ctx.settings.cgroup_driver
    join_driver = docker_driver if setting == "auto" else setting
    enabled, source = memory_cgroup(ctx)
    ctx.facts.cgroup = CgroupFacts(docker_driver, join_driver, enabled)
    details = {
        "docker": docker_driver,
        "setting": setting,
        "join": join_driver,
        "cgroup_version": info.get("CgroupVersion"),
        "memory_cgroup": enabled,
        "memory_cgroup_source": source,
    }
    if join_driver != docker_driver:
        return failed(
            f"docker uses {docker_driver} but cgroup_driver = {setting}: edgecore would fail with "
            f'"kubelet cgroup driver: "{setting}" is different from docker cgroup driver: "{docker_driver}""',
            f'Either set cgroup_driver = "auto" (or "{docker_driver}") so the join passes '
            f"--cgroupdriver={docker_driver},\nor make docker use {setting}: add "
            f'"exec-opts": ["native.cgroupdriver={setting}"] to {DAEMON_JSON} and '
            "systemctl restart docker.",
            **details,
        )
    written = edgecore_cgroup_driver(ctx.host.read_text(EDGECORE_YAML))
    if ctx.joined() is not None and written is not None and written != docker_driver:
        # Joined: edgecore uses what its edgecore.yaml says, whatever the setting says
        # now (docker's driver changed after the join is the usual way here).
        return failed(
            f"edgecore.yaml says cgroupDriver: {written} but docker uses {docker_driver}: edgecore "
            f'exits with "kubelet cgroup driver: "{written}" is different from docker cgroup '
            f'driver: "{docker_driver}""',
            f"Set cgroupDriver: {docker_driver} in {EDGECORE_YAML} and restart edgecore, or make "
            f'docker use {written} again ("exec-opts": ["native.cgroupdriver={written}"] in '
            f"{DAEMON_JSON}, systemctl restart docker).",
            **details,
            edgecore_yaml=written,
        )
    if enabled is False:
        return failed(
            f"the kernel's memory cgroup is disabled ({source}); edgecore cannot limit pods",
            cmdline_remedy(ctx),
            **details,
        )
    return passed(f"docker and the join both use {join_driver}", **details)

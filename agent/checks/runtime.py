"""The CRI runtime a KubeEdge release after v1.13 joins with (containerd, cri-dockerd,
CRI-O): does it serve the CRI, does runc use the cgroup driver the join passes, is its
pod sandbox image there, can pods get a network. docs/kubeedge-versions.md says why each
matters; with runtime = "docker" (dockershim) they are skipped."""

from __future__ import annotations

import re
from typing import Any

from agent import containerd_config, cri_dockerd_unit
from agent.checks.context import CheckContext
from agent.checks.docker import cmdline_remedy, memory_cgroup
from agent.checks.facts import CgroupFacts, RuntimeFacts
from agent.checks.registry import Outcome, check, failed, not_used, passed, skipped, warned
from kedge.cri import GRPC_UNIMPLEMENTED, CriClient, CriError
from kedge.elf import elf_machine
from kedge.kubeedge import ARCH_BY_ELF_MACHINE, ARCH_BY_MACHINE, Release

CRI_TIMEOUT_S = 10.0
MIN_CONTAINERD = (1, 6)  # CRI v1 (runtime.v1), which KubeEdge from v1.14 speaks
CNI_CONF_DIR, CNI_BIN_DIR = "/etc/cni/net.d", "/opt/cni/bin"
CGROUPS_PATH_ERROR = 'expected cgroupsPath to be of format "slice:prefix:name" for systemd cgroups'


def _dockershim(ctx: CheckContext) -> Outcome | None:
    if ctx.settings.runtime == "docker":
        return not_used("runtime is docker (dockershim, KubeEdge v1.13): no CRI runtime is used")
    return None


def _version(text: str) -> tuple[int, int]:
    m = re.match(r"v?(\d+)\.(\d+)", text)
    return (int(m[1]), int(m[2])) if m else (0, 0)


@check(
    "cri",
    "Container runtime (CRI)",
    "The runtime the join will use answers the CRI (v1) on its socket and is ready.",
)
async def cri(ctx: CheckContext) -> Outcome:
    if (skip := _dockershim(ctx)) is not None:
        return skip
    s = ctx.settings
    endpoint = s.runtime_endpoint
    details: dict[str, Any] = {"runtime": s.runtime, "endpoint": endpoint}
    client = CriClient(endpoint, timeout=CRI_TIMEOUT_S)
    try:
        version = await client.version()
        conditions = {c.type: c for c in await client.conditions()}
    except CriError as exc:
        if exc.code == GRPC_UNIMPLEMENTED:
            return failed(
                f"{endpoint} does not serve the CRI: {exc} (containerd's CRI plugin is disabled; "
                "keadm join would stop with the same words)",
                'Enable containerd\'s CRI plugin: remove "cri" from disabled_plugins in '
                f"{containerd_config.PATH} (Docker's containerd.io package disables it), then "
                "systemctl restart containerd. kedge-agent fix does both.",
                **details,
            )
        return failed(
            f"no CRI runtime answers at {endpoint}: {exc}",
            "Install and start the runtime (apt install containerd; systemctl enable --now "
            "containerd), or set remote_runtime_endpoint to the socket it serves.",
            **details,
        )
    details |= {"name": version.runtime_name, "version": version.runtime_version,
                "cri_api": version.runtime_api_version}  # fmt: skip
    config = None
    if version.runtime_name == "containerd":
        text = ctx.host.read_text(containerd_config.PATH)
        try:
            config = containerd_config.parse(text or "")
        except containerd_config.ConfigUnreadable as exc:
            return failed(str(exc), f"Fix {containerd_config.PATH}; containerd config dump shows what it reads.",
                          **details)  # fmt: skip
    network = conditions.get("NetworkReady")
    if version.runtime_name == "docker":  # cri-dockerd
        default = await cri_dockerd_unit.default_sandbox(ctx.host)
        sandbox: str | None = cri_dockerd_unit.sandbox_image(ctx.host, default)
    else:
        sandbox = (config.sandbox_image if config else None) or containerd_config.default_sandbox(
            version.runtime_version
        )
    ctx.facts.runtime = RuntimeFacts(endpoint, version.runtime_name, version.runtime_version,
                                     network.status if network else None,
                                     network.message if network else "", sandbox, config)  # fmt: skip
    if version.runtime_name == "containerd" and _version(version.runtime_version) < MIN_CONTAINERD:
        return failed(
            f"containerd {version.runtime_version} is older than 1.6: KubeEdge after v1.13 needs CRI v1",
            "Upgrade containerd to 1.6 or later (Debian 12: apt install containerd).",
            **details,
        )
    ready = conditions.get("RuntimeReady")
    if ready is not None and not ready.status:
        return failed(f"{version.runtime_name} is not ready: {ready.reason} {ready.message}".strip(),
                      f"journalctl -u {version.runtime_name} -e", **details)  # fmt: skip
    return passed(f"{version.runtime_name} {version.runtime_version} serves CRI "
                  f"{version.runtime_api_version} at {endpoint}", **details)  # fmt: skip


def _adopts_runtime_driver(ctx: CheckContext, containerd_version: str) -> bool:
    """containerd from 2.0 answers the CRI's RuntimeConfig with its cgroup driver, and
    edgecore from v1.22 (vendoring Kubernetes 1.31, where KubeletCgroupDriverFromCRI is on
    by default: versioned_kube_features.go@v1.23.1) takes it over its own setting."""
    try:
        major = int(containerd_version.lstrip("v").split(".", 1)[0])
    except ValueError:
        return False
    return major >= 2 and Release(ctx.settings.kubeedge_version).minor >= (1, 22)


def join_driver(ctx: CheckContext, runtime_driver: str) -> str:
    setting = ctx.settings.cgroup_driver
    return runtime_driver if setting == "auto" else setting


@check(
    "runtime-cgroup",
    "Runtime cgroup driver and memory cgroup",
    "runc (through containerd) uses the cgroup driver keadm join passes to edgecore, and "
    "the kernel's memory cgroup is enabled.",
    needs=("cri",),
)
async def runtime_cgroup(ctx: CheckContext) -> Outcome:
    if (skip := _dockershim(ctx)) is not None:
        return skip
    enabled, source = memory_cgroup(ctx)
    if enabled is False:
        # keadm join still says success: it only waits for certificates; edgecore's
        # kubelet then stops at its container manager's system validation.
        return failed(
            f"the kernel's memory cgroup is disabled ({source}): edgecore would exit right "
            'after keadm reported success ("system validation failed - Following Cgroup '
            'subsystem not mounted: [memory]")',
            cmdline_remedy(ctx),
            memory_cgroup=False,
            memory_cgroup_source=source,
        )
    found = ctx.facts.runtime
    if ctx.settings.runtime == "cri-dockerd" or (found is not None and found.name == "docker"):
        return not_used(
            "cri-dockerd runs pods through docker: the cgroup-driver check covers its driver"
        )
    if found is None or found.config is None:
        name = found.name if found else "the runtime"
        return skipped(f"{name}'s cgroup driver is not read by kedge (containerd's is)")
    runtime_driver = "systemd" if found.config.systemd_cgroup else "cgroupfs"
    join = join_driver(ctx, runtime_driver)
    ctx.facts.cgroup = CgroupFacts(runtime_driver, join, None)
    details = {"containerd": runtime_driver, "setting": ctx.settings.cgroup_driver, "join": join,
               "config": containerd_config.PATH}  # fmt: skip
    if join != runtime_driver and _adopts_runtime_driver(ctx, found.version):
        return warned(
            f"containerd's runc uses {runtime_driver}, the join passes --cgroupdriver={join}: "
            f"edgecore {ctx.settings.kubeedge_version} asks containerd {found.version} for its "
            "driver (RuntimeConfig; KubeletCgroupDriverFromCRI, on from the Kubernetes 1.31 it "
            f"vendors) and uses {runtime_driver}",
            'Set cgroup_driver = "auto" so the join says what edgecore will do.',
            **details,
        )
    if join != runtime_driver and runtime_driver == "cgroupfs":
        # Not a failure: pods start, but in slices runc does not account to.
        return warned(
            f"containerd's runc uses cgroupfs but the join passes --cgroupdriver={join}: "
            "edgecore would put pods in systemd slices that runc does not use, so their "
            "limits would not hold",
            f"Set SystemdCgroup = true under runc's options in {containerd_config.PATH} and "
            'systemctl restart containerd (kedge-agent fix does it), or set cgroup_driver = "auto".',
            **details,
        )
    if join != runtime_driver:  # runc on systemd, the join on cgroupfs: the join fails
        return failed(
            f"containerd's runc uses {runtime_driver} but the join passes --cgroupdriver={join}: "
            f'keadm join would fail at "copy resources" with "{CGROUPS_PATH_ERROR}"',
            f"Set SystemdCgroup = false under runc's options in {containerd_config.PATH} and "
            'systemctl restart containerd (kedge-agent fix does it), or set cgroup_driver = "auto".',
            **details,
        )
    return passed(f"containerd and the join both use {join}", **details)


@check(
    "sandbox-image",
    "Pod sandbox image",
    "The runtime's own pause image is present: join's copy step and every pod need it, "
    "and --image-repository does not change it.",
    needs=("cri",),
)
async def sandbox_image(ctx: CheckContext) -> Outcome:
    if (skip := _dockershim(ctx)) is not None:
        return skip
    found = ctx.facts.runtime
    if found is None or not found.sandbox_image:
        return skipped("the runtime's sandbox image is not known to kedge")
    details = {"image": found.sandbox_image, "runtime": found.name}
    try:
        present = await CriClient(found.endpoint, timeout=CRI_TIMEOUT_S).image_id(
            found.sandbox_image
        )
    except CriError as exc:
        return failed(f"cannot ask {found.endpoint} for {found.sandbox_image}: {exc}",
                      f"journalctl -u {found.name} -e", **details)  # fmt: skip
    if present is None:
        return warned(
            f"{found.sandbox_image} is not in {found.name}: the join pulls it at its copy step, "
            "which an offline board cannot",
            "kedge-agent fix pulls it now (through the runtime's registry settings); offline, "
            "import it: ctr -n k8s.io images import pause.tar",
            **details,
        )
    return passed(f"{found.sandbox_image} is present", **details)


def _conf_files(ctx: CheckContext, conf_dir: str = CNI_CONF_DIR) -> list[str]:
    return [f"{conf_dir}/{n}" for n in ctx.host.entries(conf_dir)
            if n.endswith((".conf", ".conflist", ".json"))]  # fmt: skip


def _cni_dirs(ctx: CheckContext) -> tuple[str, str]:
    """Where the runtime looks for the CNI config and plugins: containerd says so in its
    configuration (found running Debian's containerd with Debian's plugins in
    /usr/lib/cni, tests/real/); the others use the defaults."""
    if ctx.settings.runtime != "containerd":
        return CNI_CONF_DIR, CNI_BIN_DIR
    try:
        config = containerd_config.parse(ctx.host.read_text(containerd_config.PATH) or "")
    except containerd_config.ConfigUnreadable:
        return CNI_CONF_DIR, CNI_BIN_DIR  # the cri check names the broken file
    return config.cni_conf_dir or CNI_CONF_DIR, config.cni_bin_dir or CNI_BIN_DIR


def _plugin_types(text: str) -> list[str]:
    return sorted(set(re.findall(r'"type"\s*:\s*"([A-Za-z0-9_.-]+)"', text)))


@check(
    "cni",
    "Pod network (CNI)",
    "A CNI config and its plugins for this board's architecture: without them the node stays NotReady.",
    needs=("cri",),
)
async def cni(ctx: CheckContext) -> Outcome:
    if (skip := _dockershim(ctx)) is not None:
        return skip
    conf_dir, bin_dir = _cni_dirs(ctx)
    files = _conf_files(ctx, conf_dir)
    details: dict[str, Any] = {"config_dir": conf_dir, "bin_dir": bin_dir, "files": files}
    if not files:
        return failed(
            f'no CNI config in {conf_dir}: the node would stay NotReady ("cni plugin not initialized")',
            f"Install the CNI plugins for {ARCH_BY_MACHINE.get(ctx.host.machine(), ctx.host.machine())} "
            f"(apt install containernetworking-plugins puts them in /usr/lib/cni; link or copy them to "
            f"{bin_dir}) and write a bridge config to {conf_dir}/10-kedge-bridge.conflist; "
            "kedge-agent fix does it from a local archive (cni_plugins_archive).",
            **details,
        )  # fmt: skip
    wanted = _plugin_types("\n".join(ctx.host.read_text(f) or "" for f in files))
    arch = ARCH_BY_MACHINE.get(ctx.host.machine())
    missing, foreign = [], []
    for plugin in wanted:
        path = f"{bin_dir}/{plugin}"
        if not ctx.host.exists(path):
            missing.append(plugin)
            continue
        machine = elf_machine(ctx.host.path(path))
        if machine is not None and arch is not None and ARCH_BY_ELF_MACHINE.get(machine) != arch:
            foreign.append(plugin)
    details |= {"plugins": wanted, "missing": missing, "wrong_arch": foreign}
    if missing or foreign:
        what = "; ".join(filter(None, [
            f"missing from {bin_dir}: {', '.join(missing)}" if missing else "",
            f"built for another architecture than {arch}: {', '.join(foreign)}" if foreign else "",
        ]))  # fmt: skip
        return failed(
            f"the CNI config names plugins that cannot run: {what}",
            f"Install the CNI plugins built for {arch} into {bin_dir} (the reference "
            "install fetches amd64 ones only).",
            **details,
        )
    network = ctx.facts.runtime
    if network is not None and network.network_ready is False:
        return warned(f"the runtime says its network is not ready: {network.network_message}",
                      f"systemctl restart {network.name} to make it read {conf_dir} again",
                      **details)  # fmt: skip
    return passed(f"{', '.join(files)} with {', '.join(wanted) or 'no plugin'}", **details)


@check(
    "runtime-images",
    "KubeEdge images (CRI)",
    "The images the target release's keadm join pulls, and from v1.16 the eclipse-mosquitto "
    "image of the pod the cloud runs on every edge node, are already in the runtime, so the "
    "join and that pod work on a slow or offline link.",
    needs=("cri",),
)
async def runtime_images(ctx: CheckContext) -> Outcome:
    if (skip := _dockershim(ctx)) is not None:
        return skip
    found = ctx.facts.runtime
    if found is None:
        return skipped("the runtime did not answer")
    wanted = Release(ctx.settings.kubeedge_version).board_images(ctx.settings.image_repository)
    client = CriClient(found.endpoint, timeout=CRI_TIMEOUT_S)
    try:
        missing = [ref for ref in wanted if await client.image_id(ref) is None]
    except CriError as exc:
        return failed(f"cannot ask {found.endpoint} for images: {exc}", f"journalctl -u {found.name} -e",
                      images=wanted)  # fmt: skip
    details = {"images": wanted, "missing": missing, "runtime": found.name}
    if missing:
        return warned(
            f"not in {found.name} yet: {', '.join(missing)} (keadm join pulls them through the CRI; "
            "an offline board cannot)",
            "kedge-agent fix pulls them now through the runtime (its registry mirrors apply); "
            "offline: ctr -n k8s.io images import IMAGE.tar",
            **details,
        )
    return passed(f"{len(wanted)} image{'s' if len(wanted) != 1 else ''} present in {found.name}",
                  **details)  # fmt: skip

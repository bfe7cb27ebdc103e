"""`kedge-agent join`: preflight, keadm with flags derived from the board, verification,
and a clean board again when it fails."""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from agent import edgecore_run, enrollment
from agent.checks.context import CheckContext
from agent.checks.platform import ALWAYS as JOIN_TOOLS
from agent.diagnose import recognise
from agent.docker_api import DockerClient
from agent.edgecore_dropin import (
    DROPIN,
    STANDARD_DOCKER_SOCKET,
    edgecore_docker_host,
    point_edgecore_at,
)
from agent.fix import run_fix
from agent.preflight import run_preflight
from agent.renewal import forget_node
from agent.reset import reset_board
from agent.settings import AgentSettings
from agent.state import JoinRecord, StateCorrupt, StateDir, now
from kedge.cloud_client import ClientError
from kedge.errors import CommandError, ProbeError, UserError
from kedge.host import Host
from kedge.kubeedge import (
    CERT_PORT,
    DOCKERSHIM_ENDPOINT,
    EDGECORE_BIN,
    EDGECORE_UNIT,
    EDGECORE_YAML,
    Release,
    hub_cycle_s,
    join_images,
    supports_docker,
)
from kedge.names import is_dns1123_subdomain, split_hostport
from kedge.probes import https_status_unverified
from kedge.redact import redact
from kedge.wire import ActionReport, Cause, Change, Status

log = structlog.get_logger(__name__)
KEPT_KEADM_LINES = 2000

CERTS = (
    "/etc/kubeedge/ca/rootCA.crt",
    "/etc/kubeedge/certs/server.crt",
    "/etc/kubeedge/certs/server.key",
)


def keadm_join_argv(
    settings: AgentSettings, *, node: str, token: str, docker_driver: str
) -> list[str]:
    """keadm's flags from the board, never from keadm's defaults (remote runtime,
    containerd's socket and cgroupfs are wrong for a docker board)."""
    if settings.cloudcore is None:
        raise UserError(
            "cloudcore is not set: pass --cloudcore HOST:PORT or set cloudcore in the config"
        )
    if not is_dns1123_subdomain(node):
        raise UserError(
            f"node name {node!r} is not a valid DNS-1123 subdomain (see kedge-agent check --only node-name)"
        )
    argv = [
        "keadm", "join",
        f"--cloudcore-ipport={settings.cloudcore}",
        f"--edgenode-name={node}",
        f"--kubeedge-version={settings.kubeedge_version}",
        f"--token={token}",
    ]  # fmt: skip
    if settings.cloudcore_cert_port != CERT_PORT:
        argv.append(f"--certport={settings.cloudcore_cert_port}")
    if settings.runtime == "docker":
        if not supports_docker(settings.kubeedge_version):
            raise UserError(
                f"KubeEdge {settings.kubeedge_version} cannot drive docker (see the kubeedge-version check)"
            )
        argv += ["--runtimetype=docker", f"--remote-runtime-endpoint={DOCKERSHIM_ENDPOINT}"]
        driver = docker_driver if settings.cgroup_driver == "auto" else settings.cgroup_driver
    else:
        if Release(settings.kubeedge_version).runtimetype_flag:
            argv += ["--runtimetype=remote"]  # "unknown flag" from v1.16 on
        if settings.remote_runtime_endpoint or settings.runtime != "remote":
            argv.append(f"--remote-runtime-endpoint={settings.runtime_endpoint}")
        # auto: what the runtime's runc uses (the runtime-cgroup check read containerd's)
        driver = docker_driver if settings.cgroup_driver == "auto" else settings.cgroup_driver
    argv.append(f"--cgroupdriver={driver}")
    if settings.image_repository:
        argv.append(f"--image-repository={settings.image_repository}")
    if settings.labels:
        argv.append("--labels=" + ",".join(f"{k}={v}" for k, v in sorted(settings.labels.items())))
    if settings.node_ip is not None:
        if Release(settings.kubeedge_version).minor < (1, 18):
            raise UserError(
                f"node_ip needs KubeEdge v1.18 or later (keadm join --set); "
                f"{settings.kubeedge_version}'s keadm has no way to pass it: remove node_ip"
            )
        argv.append(f"--set=modules.edged.nodeIP={settings.node_ip}")
    return argv


async def is_joined(host: Host, state: StateDir) -> JoinRecord | None:
    try:
        record = state.load_join()
    except StateCorrupt:
        return None
    if record is None or record.phase != "joined":
        return None
    if not all(host.exists(c) for c in CERTS) or not await edgecore_run.is_active(host):
        return None
    return record


async def settle(host: Host, seconds: float) -> bool:
    """edgecore must stay up for the whole window and not be restarted in it. The unit
    keadm writes has Restart=always, RestartSec=10 (join.go@v1.13.0); a background
    edgecore that exits is simply gone."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    first = await edgecore_run.generation(host)
    while True:
        if not await edgecore_run.is_active(host) or await edgecore_run.generation(host) != first:
            return False
        if loop.time() >= deadline:
            return True
        await asyncio.sleep(min(0.5, max(0.0, deadline - loop.time())))


async def _not_staying_up(host: Host, settings: AgentSettings) -> Cause:
    if not edgecore_run.by_systemd(host):
        log_file = Release(settings.kubeedge_version).background_log
        return Cause(
            id="edgecore-not-staying-up",
            summary="keadm finished, but edgecore does not stay up: it ran it in the "
            "background (no systemd runs here) and nothing restarts it",
            remedy=f"{log_file} shows why it exits; the causes below, if any, are what "
            "kedge recognised there.",
            evidence=f"no edgecore process; pids seen: {edgecore_run.pids(host) or 'none'}",
        )
    props = await host.unit_properties(EDGECORE_UNIT, "ActiveState", "NRestarts", timeout=10) or {}
    seen = f"ActiveState={props.get('ActiveState', '?')}, NRestarts={props.get('NRestarts', '?')}"
    return Cause(
        id="edgecore-not-staying-up",
        summary="keadm finished, but edgecore does not stay up: systemd keeps restarting it",
        remedy="journalctl -u edgecore -e shows why it exits; the causes below, if any, are "
        "what kedge recognised there.",
        evidence=seen,
    )


async def hub_connected(host: Host, cloudcore: str, within_s: float) -> bool:
    """An established connection from edgecore to cloudhub's address, within a bound."""
    want = split_hostport(cloudcore)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        if want in await asyncio.to_thread(host.peers_of, "edgecore"):
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.5)


# keadm's step 5 (edge/image.go@v1.13.0): run the installation image to copy edgecore
# out, never looking at how the copy ended.
COPY_STEP = "Copy resources from the image to the management directory"


def _not_copied(settings: AgentSettings) -> Cause:
    image = join_images(settings.kubeedge_version, settings.image_repository)[0]
    return Cause(
        id="edgecore-not-copied",
        summary=f"keadm did not get edgecore out of {image}: the image does not run keadm's "
        "copy on this board (built for another architecture, or an entrypoint that swallows "
        "keadm's `/bin/sh -c cp …`: seen on the real v1.13.0 keadm), and keadm does not check",
        remedy=f"docker image inspect {image} --format '{{{{.Architecture}}}} "
        f"{{{{.Config.Entrypoint}}}}' must name this board's architecture and no entrypoint; "
        f"docker rmi {image}, then kedge-agent fix --only images.",
        evidence=f"{EDGECORE_BIN} missing after keadm's step 5",
    )


def _same_docker(docker_host: str | None, socket: str) -> bool:
    """Whether edgecore's DOCKER_HOST (None: unset) reaches the docker at `socket`."""
    return (docker_host or f"unix://{STANDARD_DOCKER_SOCKET}").removeprefix("unix://") == socket


def _other_docker(docker_host: str | None, socket: str) -> Cause:
    return Cause(
        id="edgecore-other-docker",
        summary=f"edgecore talks to docker at {docker_host or STANDARD_DOCKER_SOCKET}, but keadm "
        f"pulled into the docker at {socket}",
        remedy=f"Something overrides kedge's {DROPIN}: see `systemctl cat edgecore` and "
        "`systemctl show-environment`, remove the other DOCKER_HOST, then join again.",
        evidence=f"systemctl show -p Environment edgecore: DOCKER_HOST={docker_host or '(unset)'}",
    )


def _hub_unreachable(cloudcore: str) -> Cause:
    return Cause(
        id="hub-unreachable",
        summary=f"edgecore got its certificates but never connected to cloudhub at {cloudcore}: "
        "the Node will not appear",
        remedy="Open TCP from the board to the master's port 10000 (firewall, NAT, security "
        "group); `kedge-agent check --only cloudcore` probes it; journalctl -u edgecore "
        'shows "Init websocket connection failed".',
        evidence=f"no established connection from edgecore to {cloudcore}",
    )


def _report(ok: bool, summary: str, node: str, **fields: Any) -> ActionReport:
    return ActionReport(command="join", ok=ok, summary=summary, node=node, **fields)


async def run_join(
    settings: AgentSettings,
    host: Host,
    state: StateDir,
    *,
    ignore: list[str],
    emit: Callable[[str], None],
) -> ActionReport:
    async with DockerClient(settings.docker_socket) as docker:
        token = CheckContext(settings, host, docker).token()
        if token is None:
            raise UserError(
                "no join token: pass --token or --token-file (from `keadm gettoken` on the master)"
            )
        joined = await is_joined(host, state)
        if joined is not None:
            return _report(
                True,
                f"already joined to {joined.cloudcore} as {joined.node}: nothing to do",
                joined.node,
            )

        changes: list[Change] = []
        try:
            previous = state.load_join()
        except StateCorrupt as exc:
            emit(f"{exc}; cleaning up as after an unfinished join")
            changes += await reset_board(host, docker, settings)
            state.clear_join()
            previous = None
        if previous is not None and previous.unfinished:
            emit(
                f"cleaning up the unfinished join of {previous.started_at:%Y-%m-%d %H:%M}Z (phase {previous.phase})"
            )
            changes += await reset_board(host, docker, settings)

        changes += await _forget_old_node(settings, host, state, emit)
        found = await run_preflight(settings, host, ignore=ignore)
        preflight = found.report
        blocking = [c for c in preflight.checks if c.status.blocks]
        if blocking:
            names = ", ".join(f"{c.id} ({c.summary})" for c in blocking)
            return _report(
                False,
                f"preflight failed: {names}",
                preflight.node,
                changes=changes,
                checks=preflight.checks,
            )

        # keadm v1.13 takes the token only as --token, readable in /proc/<pid>/cmdline
        # by any local user while keadm runs (mount /proc with hidepid=invisible to stop
        # that: docs/robustness.md). Pulling the images first makes that window seconds
        # instead of the minutes keadm spends pulling.
        if any(c.id == "images" and c.status is Status.WARN for c in preflight.checks):
            emit("pulling the images keadm join needs before starting it")
            pulled = await run_fix(settings, host, only=["images"], dry_run=False, emit=emit)
            changes += pulled.changes
        if settings.runtime == "docker":
            changes += point_edgecore_at(host, settings.docker_socket)
        driver = found.facts.cgroup.join_driver if found.facts.cgroup else "cgroupfs"
        argv = keadm_join_argv(settings, node=preflight.node, token=token, docker_driver=driver)
        shown = [redact(a, token) for a in argv]
        record = JoinRecord(
            phase="keadm", node=preflight.node, cloudcore=settings.cloudcore or "", argv=shown,
            kubeedge_version=settings.kubeedge_version, started_at=now(),
        )  # fmt: skip
        state.save_join(record)
        emit("$ " + " ".join(shown))
        try:
            record.keadm_exit_code, output, unrun, repaired = await _run_keadm(
                host, argv, token, settings, emit
            )
            changes += repaired
        except asyncio.CancelledError:
            record.phase, record.finished_at = "interrupted", now()
            state.save_join(record)
            raise
        fields: dict[str, Any] = {"checks": preflight.checks, "details": {"keadm_argv": shown}}
        if record.keadm_exit_code == 0 and await _verify(host, state, record, settings):
            changes.append(
                Change(action="join", target=record.cloudcore, detail=f"node {record.node}")
            )
            summary = f"joined {record.cloudcore} as {record.node}; edgecore is active and connected to cloudhub"
            return _report(True, summary, record.node, changes=changes, **fields)

        # What the texts name is the most specific; a verification finding comes first
        # only when it says more ("never reached cloudhub") than "does not stay up".
        recognised = _misread_first_step(
            host,
            recognise(
                output,
                redact(await edgecore_run.last_words(host, settings.kubeedge_version), token),
            ),
        )
        if (
            COPY_STEP in output
            and "copy resources failed" not in output
            and not host.exists(EDGECORE_BIN)
        ):
            record.causes.insert(0, _not_copied(settings))
        verified = [
            c for c in record.causes if not (recognised and c.id == "edgecore-not-staying-up")
        ]
        known = {k.id for k in verified}
        record.causes = [*verified, *(c for c in recognised if c.id not in known)]
        record.phase, record.finished_at = "failed", now()
        state.save_join(record)
        emit("join failed; cleaning the board for a retry")
        changes += await reset_board(host, docker, settings)
        # A keadm that could not start or finish says so itself, not as an exit code.
        why = (
            record.causes[0].summary
            if record.causes
            else (unrun or f"keadm exited {record.keadm_exit_code}")
        )
        return _report(
            False,
            f"join failed: {why}",
            record.node,
            changes=changes,
            causes=record.causes,
            **fields,
        )


def _misread_first_step(host: Host, causes: list[Cause]) -> list[Cause]:
    """keadm's "EdgeCore is already running" with no edgecore running and bash or pidof
    missing is keadm misreading its own first step (verified on the real v1.13.0 and
    v1.23.1 keadm): say that, not "reset", which would loop."""
    missing = [tool for tool in JOIN_TOOLS if host.which(tool) is None]
    if not missing or edgecore_run.pids(host) or all(c.id != "edgecore-running" for c in causes):
        return causes
    cause = Cause(
        id="join-tools-missing",
        summary=f"keadm stopped at its first step, 'EdgeCore is already running on this node', "
        f"because {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing: it runs "
        '`bash -c "pidof edgecore"` and reads the failure as "running"',
        remedy="Install them (apt install bash procps), then join again: "
        "`kedge-agent check --only join-tools` says what keadm needs.",
        evidence=f"no edgecore process; not on PATH: {', '.join(missing)}",
    )
    return [cause, *(c for c in causes if c.id != "edgecore-running")]


async def _forget_old_node(
    settings: AgentSettings, host: Host, state: StateDir, emit: Callable[[str], None]
) -> list[Change]:
    """An enrolled board joining again on v1.20 or later: the cluster may still have its
    Node from the earlier join, and keadm refuses the name (edge/join.go isNodeExist). The
    board is that name (its key proves it), so it asks the cloud API to delete the Node."""
    known = enrollment.load(state.path)
    if (known is None or known.command_key is None or settings.cloudcore is None
            or not Release(settings.kubeedge_version).checks_node_exists):  # fmt: skip
        return []
    node = known.node_name
    base = f"https://{settings.cloudcore.rsplit(':', 1)[0]}:{settings.cloudcore_cert_port}"
    try:
        status = await https_status_unverified(f"{base}/node/{node}", timeout=3.0)
    except ProbeError:
        return []  # the cloudcore check says why
    if status == 404:
        return []
    emit(
        f"the cluster still has Node {node} from an earlier join: asking {known.cloud_api_url} to delete it"
    )
    try:
        deleted = await forget_node(known)
    except ClientError as exc:
        emit(f"the cloud API did not delete Node {node}: {exc}")
        return []
    return (
        [Change(action="delete", target=f"Node {node}", detail="through the cloud API")]
        if deleted
        else []
    )


async def _verify(host: Host, state: StateDir, record: JoinRecord, settings: AgentSettings) -> bool:
    """keadm only waits for certificates; the node is joined when edgecore stays up and
    holds its connection to cloudhub: the Node exists only once edged registered over it
    (cloud/pkg/edgecontroller/controller/upstream.go@v1.13.0), and edgecore runs on,
    "active", when it cannot connect."""
    record.phase = "verify"
    state.save_join(record)
    if any(not host.exists(c) for c in CERTS):
        return False
    settle_s = settings.join_settle_s
    if not await settle(host, settle_s):
        record.causes = [await _not_staying_up(host, settings)]
        return False
    within = max(2 * settle_s, hub_cycle_s(host.read_text(EDGECORE_YAML)))
    if not await hub_connected(host, record.cloudcore, within):
        record.causes = [_hub_unreachable(record.cloudcore)]
        return False
    docker_host = await edgecore_docker_host(host)
    watched = settings.runtime == "docker" and edgecore_run.by_systemd(host)
    if watched and not _same_docker(docker_host, settings.docker_socket):
        record.causes = [_other_docker(docker_host, settings.docker_socket)]
        return False
    record.phase, record.finished_at = "joined", now()
    state.save_join(record)
    return True


async def _run_keadm(
    host: Host, argv: list[str], token: str, settings: AgentSettings, emit: Callable[[str], None]
) -> tuple[int | None, str, str | None, list[Change]]:
    """Run keadm, streaming its output (token redacted) line by line: its exit code
    (None if it did not run to the end), the last KEPT_KEADM_LINES for the diagnosis,
    why it did not run to the end (not found, cannot start, out of time), and what kedge
    repaired while it ran (edgecore_run.start_as_keadm_meant)."""
    lines: deque[str] = deque(maxlen=KEPT_KEADM_LINES)
    started_in_background = asyncio.Event()

    def on_line(line: str) -> None:
        clean = redact(line, token)
        lines.append(clean)
        log.info("keadm.output", line=clean)
        emit(f"keadm: {clean}")
        if edgecore_run.BACKGROUND_TIP in clean:
            started_in_background.set()

    async def repair() -> list[Change]:
        await started_in_background.wait()
        done = await edgecore_run.start_as_keadm_meant(host, Release(settings.kubeedge_version))
        if done is not None:
            emit(f"kedge: {done.detail}")
        return [done] if done is not None else []

    # keadm pulls through the docker client, which reads DOCKER_HOST.
    env = {**os.environ, "DOCKER_HOST": f"unix://{settings.docker_socket}"}
    repairing = asyncio.create_task(repair())
    try:
        code = await host.run_streaming(
            argv, timeout=settings.join_timeout_s, env=env, on_line=on_line
        )
    except CommandError as exc:
        lines.append(str(exc))
        return None, "\n".join(lines), str(exc), await _finish(repairing)
    return code, "\n".join(lines), None, await _finish(repairing)


async def _finish(repairing: asyncio.Task[list[Change]]) -> list[Change]:
    """The repair's changes; a repair still waiting for its line is called off."""
    if not repairing.done():
        repairing.cancel()
        await asyncio.wait([repairing])
    if repairing.cancelled():
        return []
    if isinstance(failure := repairing.exception(), CommandError):
        log.warning("join.repair", error=str(failure))
        return []
    return repairing.result()

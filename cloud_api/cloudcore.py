"""Cloudcore's lifecycle on this master: what is installed, install or upgrade it with the
fixes the field needs (cloudcore_plan), reset it, read its join token. Everything runs
through the host seam (keadm and kubectl on its search path)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

import structlog

from cloud_api import cloudcore_plan as plan
from cloud_api.jobs import Job, JobFailed
from cloud_api.kube import Kubectl, KubeError
from cloud_api.settings import CloudSettings
from cloud_api.store import Store
from kedge.elf import elf_machine
from kedge.errors import CommandError, ProbeError
from kedge.host import Host
from kedge.kubeedge import EDGE_PORTS, refuse_advised
from kedge.probes import tcp_connect
from kedge.token import parse_token

log = structlog.get_logger(__name__)
NAMESPACE = "kubeedge"
POLL_S = 1.0
TOKEN_WAIT_S = 30.0
# gettoken's error before cloudcore has made its token Secret
NO_TOKEN_YET = 'secrets "tokensecret" not found'  # noqa: S105 (a Secret's name, not a password)


@dataclass(frozen=True)
class InstallPlan:
    advertise: list[str]
    interfaces: dict[str, str]
    version: str
    kubernetes: str
    tolerations: list[dict[str, str]]
    upgrade_from: str | None


@dataclass(frozen=True)
class Status:
    installed: bool
    version: str | None
    image: str | None
    node: str | None
    pod_phase: str | None
    available: bool
    advertise_addresses: list[str] | None
    ports: dict[str, bool]
    managed: bool
    advisory: str | None = None  # why the running release must be replaced


class Cloudcore:
    def __init__(self, host: Host, settings: CloudSettings, store: Store) -> None:
        self.host, self.settings, self.store = host, settings, store
        self.kubectl = Kubectl(host, settings.kubeconfig)

    @property
    def keadm(self) -> str:
        # keadm_path's directory leads the host's search path (see server.py)
        return self.settings.keadm_path.name if self.settings.keadm_path else "keadm"

    # -- reading ------------------------------------------------------------
    async def ports_open(self, addresses: list[str]) -> dict[str, bool]:
        async def one(address: str, port: int) -> tuple[str, bool]:
            try:
                await tcp_connect(address, port, timeout=2.0)
            except ProbeError:
                return f"{address}:{port}", False
            return f"{address}:{port}", True

        results = await asyncio.gather(*(one(a, p) for a in addresses for p in EDGE_PORTS))
        return dict(results)

    async def status(self) -> Status:
        record = self.store.cloudcore()
        deploy = await self.kubectl.deployment(NAMESPACE, "cloudcore")
        managed = record is not None
        if deploy is None:
            return Status(
                installed=False,
                version=None,
                image=None,
                node=None,
                pod_phase=None,
                available=False,
                advertise_addresses=None,
                ports={},
                managed=managed,
            )
        pods = await self.kubectl.pod_nodes(NAMESPACE)
        phase, node = pods[0] if pods else (None, None)
        advertise = list(record.advertise) if record else None
        ports = await self.ports_open(advertise) if advertise else {}
        return Status(
            installed=True,
            version=deploy.tag,
            image=deploy.image,
            node=node or None,
            pod_phase=phase,
            available=deploy.available,
            advertise_addresses=advertise,
            ports=ports,
            managed=managed,
            advisory=refuse_advised(deploy.tag) if deploy.tag else None,
        )

    async def token(self) -> tuple[str, float | None]:
        """The current join token and its expiry (epoch seconds) decoded from the JWT.

        cloudcore creates Secret tokensecret a moment after it starts, and anew at every
        start: right after an install or a restart the Deployment can be Available with
        no token yet, so "not found" is retried for TOKEN_WAIT_S while cloudcore is up."""
        deadline = time.monotonic() + TOKEN_WAIT_S
        while True:
            try:
                result = await self.host.run(
                    [self.keadm, "gettoken", f"--kube-config={self.settings.kubeconfig}"],
                    timeout=30,
                )
            except CommandError as exc:
                raise KubeError(str(exc)) from exc
            error = _keadm_error(result.stderr)
            if result.ok or not (
                NO_TOKEN_YET in error and time.monotonic() < deadline and await self._available()
            ):
                break
            await asyncio.sleep(POLL_S)
        if not result.ok:
            raise KubeError(error or f"keadm gettoken: exit {result.returncode}")
        token = result.stdout.strip()
        try:
            expires = parse_token(token).expires_at
        except ValueError as exc:
            raise KubeError(
                f"keadm gettoken printed something that is not a join token ({exc})"
            ) from exc
        return token, expires.timestamp() if expires else None

    # -- deciding -----------------------------------------------------------
    async def plan(
        self, advertise: list[str], version: str | None, *, allow_unsupported: bool
    ) -> InstallPlan:
        """Every reason keadm init would fail, found before running it (PlanError)."""
        version = version or self.settings.kubeedge_version
        plan.check_release(version)
        interfaces = [plan.Interface(n, a) for n, a in self.host.addresses()]
        where = plan.check_advertise(advertise, interfaces)
        keadm = self.host.which(self.keadm)
        if keadm is None:
            raise plan.PlanError(
                f"keadm not found on {':'.join(self.host.search_path)}; install it or set keadm_path"
            )
        try:
            machine = elf_machine(self.host.path(keadm))
        except OSError as exc:
            raise plan.PlanError(f"cannot read {keadm}: {exc.strerror}") from exc
        plan.check_keadm_arch(machine, self.host.machine())
        k8s = await self.kubectl.server_version()
        plan.check_k8s(version, k8s, allow_unsupported=allow_unsupported)
        nodes = await self.kubectl.nodes()
        plan.check_room(nodes)
        current = await self.kubectl.deployment(NAMESPACE, "cloudcore")
        plan.check_upgrade(current.tag if current else None, version, nodes)
        return InstallPlan(
            advertise=advertise,
            interfaces=where,
            version=version,
            kubernetes=f"{k8s[0]}.{k8s[1]}",
            tolerations=plan.tolerations_needed(nodes),
            upgrade_from=current.tag if current else None,
        )

    # -- changing -----------------------------------------------------------
    async def _keadm(self, job: Job, argv: list[str], timeout: float) -> int:
        job.log("$ " + " ".join(argv))
        try:
            return await self.host.run_streaming(
                [self.keadm, *argv[1:]], timeout=timeout, on_line=job.log
            )
        except CommandError as exc:
            raise JobFailed(str(exc)) from exc

    async def _available(self) -> bool:
        deploy = await self.kubectl.deployment(NAMESPACE, "cloudcore")
        return deploy is not None and deploy.available

    async def _unstick_release(self, job: Job) -> None:
        """Helm writes its release record before its 60 s wait and rewrites it after: a
        keadm init killed in between leaves it pending-install (or pending-upgrade), and
        Helm then refuses every later install or upgrade of it with "another operation
        (install/upgrade/rollback) is in progress" (helm v3.7 upgrade.go, errPending).
        Only a keadm that is still running makes that true."""
        release = await self.kubectl.helm_release(NAMESPACE, "cloudcore")
        if release is None or not release[1].startswith("pending-"):
            return
        revision, status = release
        running = [p.pid for p in self.host.processes() if "keadm" in (p.name, p.program)]
        if running:
            raise JobFailed(
                f"Helm release cloudcore (revision {revision}) is {status} and keadm is running "
                f"(pid {', '.join(map(str, running))}): another init or reset is under way; "
                "wait for it to end",
                {"release": status, "keadm_pids": running},
            )
        secret = f"sh.helm.release.v1.cloudcore.v{revision}"
        job.enter("clearing a Helm release left " + status)
        await self.kubectl.delete_secret(NAMESPACE, secret)
        job.log(
            f"revision {revision} of Helm release cloudcore was left {status} by a keadm init that "
            f"did not finish, and Helm would refuse every later init: deleted its record, Secret "
            f"{NAMESPACE}/{secret}"
        )

    async def _wait_namespace_gone(self, job: Job, why: str) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout_s
        while await self.kubectl.namespace_exists(NAMESPACE):
            if time.monotonic() > deadline:
                raise JobFailed(
                    f"namespace {NAMESPACE} still exists {self.settings.ready_timeout_s:g} s {why}: "
                    f"kubectl get namespace {NAMESPACE} -o yaml shows what holds it"
                )
            await asyncio.sleep(POLL_S)
        job.log(f"namespace {NAMESPACE} is gone")

    async def _still_pulling(self) -> bool:
        """keadm's Helm wait (60 s, counted from the install) ended, but the kubelet is
        still pulling cloudcore's image: the pod will start on its own."""
        try:
            containers = await self.kubectl.containers(NAMESPACE)
        except KubeError:
            return False
        return any(c.waiting == "ContainerCreating" for c in containers)

    async def install(self, job: Job, p: InstallPlan) -> dict[str, Any]:
        # A namespace still Terminating (a reset a moment ago) refuses Helm's record.
        if await self.kubectl.namespace_phase(NAMESPACE) == "Terminating":
            job.enter(f"waiting for namespace {NAMESPACE} to finish terminating")
            await self._wait_namespace_gone(job, "after it began terminating")
        await self._unstick_release(job)
        job.enter("keadm init")
        for address, interface in p.interfaces.items():
            job.log(f"advertise address {address} is on interface {interface}")
        if p.tolerations:
            job.log(
                "the only schedulable node is a tainted control plane: cloudcore gets tolerations for "
                + ", ".join(t["key"] for t in p.tolerations)
            )
        argv = plan.init_argv(p.advertise, str(self.settings.kubeconfig), p.version, p.tolerations)
        if p.upgrade_from is not None and plan.uses_keadm_upgrade(p.version):
            job.log(
                f"cloudcore {p.upgrade_from} is installed: upgrading to {p.version} (keadm upgrade cloud)"
            )
            argv = plan.upgrade_argv(
                p.advertise, str(self.settings.kubeconfig), p.version, p.tolerations
            )
        elif p.upgrade_from is not None:
            job.log(
                f"cloudcore {p.upgrade_from} is installed: upgrading to {p.version} (keadm init --force)"
            )
            argv.append("--force")
        before = self.store.cloudcore()
        code = await self._keadm(job, argv, timeout=self.settings.init_timeout_s)
        if code != 0 and not await self._still_pulling():
            raise JobFailed(await self._why_not_running(f"keadm init failed (exit {code})"))
        if code != 0:
            job.log(
                "keadm's Helm wait (60 s from the install) ended while the kubelet was still "
                f"pulling the cloudcore image; waiting up to {self.settings.ready_timeout_s:g} s for it"
            )
        if p.upgrade_from is not None and (
            before is None or set(before.advertise) != set(p.advertise)
        ):
            await self._reissue_certificate(job, p.advertise)
        self.store.set_cloudcore(p.advertise, p.version)
        job.enter("waiting for the cloudcore Deployment")
        await self._wait(job, p.advertise)
        return {
            "version": p.version,
            "advertise_addresses": p.advertise,
            "upgraded_from": p.upgrade_from,
            "tolerations": p.tolerations,
            "status": asdict(await self.status()),
        }

    async def _reissue_certificate(self, job: Job, advertise: list[str]) -> None:
        """cloudhub keeps its server certificate in Secret cloudcoresecret and reuses it
        at every start and upgrade (cloud/pkg/cloudhub/servers/httpserver/server.go@v1.13.0,
        PrepareAllCerts): a new advertise address takes effect only once that secret is
        gone and cloudcore starts again, signing one for the addresses it has now."""
        job.enter("re-issuing cloudcore's certificate for " + ", ".join(advertise))
        try:
            deleted = await self.kubectl.delete_secret(NAMESPACE, "cloudcoresecret")
            job.log("deleted Secret kubeedge/cloudcoresecret" if deleted else
                    "no Secret kubeedge/cloudcoresecret yet")  # fmt: skip
            await self.kubectl.restart(NAMESPACE, "cloudcore")
            job.log("restarted Deployment kubeedge/cloudcore")
        except KubeError as exc:
            raise JobFailed(f"cannot re-issue cloudcore's certificate: {exc}") from exc

    async def _wait(self, job: Job, advertise: list[str]) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout_s
        available = False
        while time.monotonic() < deadline:
            deploy = await self.kubectl.deployment(NAMESPACE, "cloudcore")
            if deploy is not None and deploy.available:
                if not available:
                    job.enter("waiting for ports " + ", ".join(map(str, EDGE_PORTS)))
                available = True
                ports = await self.ports_open(advertise)
                if all(ports.values()):
                    job.log(
                        "cloudcore is available and " + ", ".join(ports) + " accept connections"
                    )
                    return
            await asyncio.sleep(POLL_S)
        if available:
            closed = [k for k, v in (await self.ports_open(advertise)).items() if not v]
            raise JobFailed(
                f"cloudcore is Available but {', '.join(closed)} refuse connections: is cloudcore's "
                "node the one that holds the advertise address (hostNetwork)?",
                {"closed": closed},
            )
        raise JobFailed(
            await self._why_not_running(
                f"cloudcore is not Available after {self.settings.ready_timeout_s:g} s"
            )
        )

    async def _why_not_running(self, what: str) -> str:
        """The scheduler's or kubelet's word for it, instead of "timed out waiting for the
        condition": a crash loop with the last line cloudcore wrote, else the newest
        telling Warning event."""
        try:
            crashing = [c for c in await self.kubectl.containers(NAMESPACE)
                        if c.waiting == "CrashLoopBackOff"]  # fmt: skip
            events = await self.kubectl.warning_events(NAMESPACE)
        except KubeError:
            crashing, events = [], []
        if crashing:
            c = crashing[0]
            try:
                said = (
                    await self.kubectl.logs(NAMESPACE, "cloudcore", previous=True, tail=5)
                ).strip()
            except KubeError:
                said = ""
            last = said.splitlines()[-1] if said else "(no log lines)"
            return (
                f"{what}: cloudcore's pod keeps exiting (CrashLoopBackOff, exit {c.last_exit}, "
                f"{c.restarts} restarts); its last words: {last}"
            )
        # "BackOff" only repeats that a pull failed; the event before it says why.
        telling = [e for e in events if not e.startswith("BackOff:")] or events
        return f"{what}: {telling[-1]}" if telling else what

    async def reset(self, job: Job) -> dict[str, Any]:
        job.enter("keadm reset")
        argv = ["keadm", "reset", "--force", f"--kube-config={self.settings.kubeconfig}"]
        code = await self._keadm(job, argv, timeout=300)
        if code != 0:
            raise JobFailed(f"keadm reset failed (exit {code}); see the job's log lines")
        job.enter(f"waiting for namespace {NAMESPACE} to go")
        await self._wait_namespace_gone(job, "after keadm reset")
        self.store.clear_cloudcore()
        return {"removed": True}


def _keadm_error(stderr: str) -> str:
    """keadm's "Error: …" line (cobra prints it twice; the first is enough)."""
    return next(
        (
            line.removeprefix("Error: ")
            for line in stderr.splitlines()
            if line.startswith("Error: ")
        ),
        "",
    )

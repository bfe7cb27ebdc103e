"""`make demo`: the seed guide's whole story on one machine, with nobody typing on a
board. A simulated master (its own network namespace) gets cloudcore from
`kedge-cloud-api init` and one first-boot seed for the batch (`seed create`); the seed's
four RK3000 boards (tests/harness/demo_boards.py: one healthy, one with k3s, one with
docker on cgroupfs, one with its clock 10 minutes behind) get it on their boot
partitions (`kedge-agent seed --write`) and are powered on: each one's first boot
enrolls it, checks, fixes and joins it — or stops, saying why — and starts its
`kedge-agent run`, which reports over MQTT to the cloud API; the verify job runs the
guide's nginx on every Ready board; the fleet table and the dashboard's address end the
story. On a terminal it then waits for Ctrl-C; otherwise (CI) it stops by itself.
--healthy gives rk3000-2 no k3s: four boards, one seed, all joined.

Real parts: the cloud API, mosquitto, a dockerd per board with a loopback registry as
Docker Hub's mirror, SNTP servers. Simulated (they cannot run here): keadm, kubectl and
the cluster, cloudcore, edgecore, systemctl/journalctl, chronyc — see tests/kubeedge_sim/.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from kedge.kubeedge import join_images
from tests.harness.demo_boards import AGENT, PROBLEMS, SeedBoard, prepare
from tests.harness.dockerd import Dockerd, seed_registry
from tests.harness.exclusive import Busy, exclusive
from tests.harness.master import CLI as CLOUD_API
from tests.harness.master import LAN_IP, MASTER_IP, Master, master
from tests.harness.mosquitto import Mosquitto
from tests.harness.registry import start_registry
from tests.harness.wait import wait_for

EXPECTED_JOIN = {"rk3000-1": True, "rk3000-2": False, "rk3000-3": True, "rk3000-4": True}


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def cloud(m: Master, *args: str, capture: bool = False) -> tuple[int, str]:
    print(f"$ kedge-cloud-api {' '.join(args)}", flush=True)
    out = m.cli(*args, timeout=600, capture=capture)
    if capture:
        print(out.stderr, end="", flush=True)  # the hint; the secret itself is the return value
    return out.returncode, (out.stdout.strip() if capture else "")


def broker_init(m: Master, broker: Mosquitto) -> None:
    """`kedge-cloud-api broker init` as on the master, into the demo's own directories
    (the real defaults are /etc/mosquitto and /var/lib/mosquitto)."""
    w = broker.workdir
    args = ["broker", "init", "--board-host", LAN_IP, "--port", str(broker.port)]
    print(f"$ kedge-cloud-api {' '.join(args)}", flush=True)
    where = ["--state-dir", str(m.state), "--conf-dir", str(w / "conf.d"), "--cert-dir",
             str(w / "certs"), "--dynsec-file", str(w / "dynamic-security.json"), "--owner", "root"]  # fmt: skip
    out = subprocess.run([CLOUD_API, *args, *where], capture_output=True, text=True, timeout=120,
                         check=False)  # fmt: skip
    print(out.stdout + out.stderr, end="", flush=True)
    if out.returncode != 0:
        raise RuntimeError(f"broker init failed: {out.stderr}")


def fleet(m: Master) -> list[dict[str, Any]]:
    status, page = m.call("GET", "/api/v1/nodes?limit=100")
    return list(page["items"]) if status == 200 else []


def reported(m: Master, names: list[str]) -> bool:
    rows = {row["node"]: row for row in fleet(m)}
    return all(
        n in rows and rows[n]["state"] == "online" and rows[n]["checks"]["at"] for n in names
    )


def outcome(b: SeedBoard, row: dict[str, Any] | None) -> str:
    if b.codes.get("firstboot") == 0:
        ready = "Ready" if row and row["ready"] else "not Ready yet"
        return f"joined, {ready} in Kubernetes"
    failing = ", ".join(row["checks"]["failing"]) if row else "see above"
    return f"stopped before keadm join: failing {failing}"


def power_on(boards: list[SeedBoard]) -> None:
    """Every board's first boot at once, as a fleet powered on together; each one's
    output shown as it ends, prefixed with its name."""
    procs = {b.name: b.firstboot() for b in boards}
    for b in boards:
        out, _ = procs[b.name].communicate(timeout=600)
        b.codes["firstboot"] = procs[b.name].returncode
        for line in out.splitlines():
            print(f"[{b.name}] {line}", flush=True)
        print(f"[{b.name}] exit {b.codes['firstboot']}", flush=True)


def first_boot_timeline(b: SeedBoard) -> None:
    """One board's first boot, phase by phase, as `kedge-agent status` shows it."""
    out = b.agent("status", capture=True).stdout
    for line in out.splitlines():
        if line.startswith(("first boot", "  ")):
            print(f"[{b.name}] {line}", flush=True)


def story(work: Path, m: Master, broker: Mosquitto, mirror: str, screenshot: Path | None,
          healthy: bool = False) -> int:  # fmt: skip
    banner("0. on the master: the broker (TLS, one identity per board), cloudcore, one seed")
    broker_init(m, broker)
    broker.start()
    # The API reaches the broker across the LAN here (it runs in the master's namespace);
    # everything else about the broker comes from broker init's record.
    m.start(mqtt={"host": LAN_IP},
            fleet={"stale_after_s": 20, "kube_poll_s": 2, "batch_wait_s": 0.05})  # fmt: skip
    print(f"master {MASTER_IP} (single tainted control plane, Kubernetes v1.23.17); "
          f"cloud API {m.url}; mosquitto {LAN_IP}:{broker.port} (TLS)")  # fmt: skip
    cloud(m, "init", "--advertise-address", MASTER_IP)
    seed_file = work / "kedge-seed.toml"
    cloud(m, "seed", "create", "--uses", "4", "--ttl", "24h", "--node-name", "{hostname}",
          "--label", "site=demo", "--allow-remote", "fix", "--out", str(seed_file))  # fmt: skip

    boards: list[SeedBoard] = []
    try:
        for name in PROBLEMS:
            boards.append(prepare(work, name, mirror, healthy=healthy))
        banner("the boards: " + "; ".join(f"{b.name}: {b.problem}" for b in boards))
        banner("1. flashing: the seed onto each board's boot partition (the same file for all)")
        for b in boards:
            boot = b.board.path("/boot/firmware")  # the card's FAT partition, mounted
            print(f"$ kedge-agent seed --write {boot} --from {seed_file}", flush=True)
            written = subprocess.run([AGENT, "seed", "--write", str(boot), "--from", str(seed_file)],
                                     capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
            print(written.stdout + written.stderr, end="", flush=True)
        banner("2. power on: every board's first boot at once (kedge-firstboot.service)")
        power_on(boards)
        banner("3. one board's first boot, phase by phase (kedge-agent status on rk3000-4)")
        first_boot_timeline(boards[-1])

        banner(
            "4. every board reports to the cloud API over MQTT (its first boot started kedge-agent run)"
        )
        names = [b.name for b in boards]
        try:
            wait_for(lambda: reported(m, names), timeout=90, what="every board's first report")
            print("all four boards online in the fleet view")
        except TimeoutError as exc:
            print(f"not every board reported: {exc}")

        banner("5. verify: the guide's nginx:1.14.2, one pod pinned to each Ready edge board")
        verified, _ = cloud(m, "verify", "--timeout", "60")

        banner("6. the fleet: one seed, a board each under its own name and broker identity")
        cloud(m, "secret", "list")
        cloud(m, "boards")
        cloud(m, "nodes")
        rows = {row["node"]: row for row in fleet(m)}
        print()
        for b in boards:
            print(f"{b.name:9} {b.problem:55} -> {outcome(b, rows.get(b.name))}")
        if screenshot is not None:
            from tests.harness.browser import save_dashboard

            banner("7. the dashboard in a headless browser: verify run again from its button")
            for line in save_dashboard(f"{m.url}/#token={m.token}", screenshot, len(boards)):
                print(f"  dashboard: {line}")
            print(f"dashboard screenshot: {screenshot}")
        expected = {**EXPECTED_JOIN, "rk3000-2": True} if healthy else EXPECTED_JOIN
        as_expected = all((b.codes.get("firstboot") == 0) == expected[b.name] for b in boards)
        if sys.stdin.isatty() and sys.stdout.isatty():
            banner(f"dashboard: {m.url}/#token={m.token}  (Ctrl-C stops everything)")
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        return 0 if as_expected and verified == 0 else 1
    finally:
        for b in boards:
            b.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--screenshot", type=Path, help="save the dashboard's picture here")
    parser.add_argument("--healthy", action="store_true", help="rk3000-2 without k3s")
    args = parser.parse_args(argv)
    if shutil.which("unshare") is None or __import__("os").geteuid() != 0:
        print(
            "make demo needs root (network and PID namespaces, private dockerds)", file=sys.stderr
        )
        return 2
    # SIGTERM ends the story as Ctrl-C does: through the finally blocks that stop it all.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with exclusive("make demo") as removed:
            if removed:
                print(f"removed what a killed run left: {', '.join(removed)}", flush=True)
            return _run(args)
    except Busy as exc:
        print(exc, file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    work = Path(tempfile.mkdtemp(prefix="kedge-demo-"))
    banner("setting up: a registry as Docker Hub's mirror, the master, mosquitto")
    print(f"work directory: {work} (removed at the end)", flush=True)
    registry = start_registry(work / "registry")
    seeder = Dockerd().start()
    rc = 1
    try:
        seed_registry(seeder, registry.address, join_images("v1.13.0"))
        seeder.stop()
        with master(work) as m:
            broker = Mosquitto(work / "mosquitto", state_dir=m.state, board_host=LAN_IP)
            try:
                rc = story(work, m, broker, registry.url, args.screenshot, args.healthy)
            finally:
                broker.stop()
    except KeyboardInterrupt:
        rc = 130
    finally:
        seeder.stop()
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)
    banner(
        "done: " + ("the story went as the guide's reader would want" if rc == 0 else f"exit {rc}")
    )
    return rc


if __name__ == "__main__":
    raise SystemExit(main())

"""keadm v1.13.0's cloud side (init, gettoken, reset of a cloud node) over the simulated
cluster (cluster.py). Faithful to docs/kubeedge-1.13.md: --kubeedge-version is ignored
(the tag comes from --profile version=…, else the offline default 1.12.0), each --set is
split at '=' and de-duplicated by key before Helm reads it, a pod that cannot be
scheduled ends in "timed out waiting for the condition", and cloudcore then creates
tokensecret with a real CA and token."""

from __future__ import annotations

import base64
import re
import time
from pathlib import Path

from tests.kubeedge_sim import cluster, helm, sim
from tests.kubeedge_sim.cobra import Flag, fail, parse

INIT_FLAGS = [
    Flag("advertise-address"),
    Flag("kubeedge-version"),
    Flag("kube-config", None, "/root/.kube/config"),
    Flag("manifests"),
    Flag("files", "f"),
    Flag("dry-run", "d", False, "bool"),
    Flag("external-helm-root"),
    Flag("set", None, None, "stringArray"),
    Flag("profile"),
    Flag("force", None, False, "bool"),
]
GETTOKEN_FLAGS = [Flag("kube-config", None, "/root/.kube/config")]
OFFLINE_DEFAULT_TAG = "v1.12.0"


def rebuild_sets(values: list[str]) -> dict[str, str]:
    """keadm's rebuildFlagVals: split each value at '=', keep one value per key."""
    out: dict[str, str] = {}
    for v in values:
        parts = v.split("=")
        out[parts[0]] = parts[1] if len(parts) > 1 else ""
    return out


def tolerations_from(sets: dict[str, str]) -> list[dict[str, str]]:
    found: dict[int, dict[str, str]] = {}
    for key, value in sets.items():
        m = re.fullmatch(r"cloudCore\.tolerations\[(\d+)\]\.(\w+)", key)
        if m:
            found.setdefault(int(m[1]), {})[m[2]] = value
    return [found[i] for i in sorted(found)]


def cmd_init(args: list[str], root: Path) -> int:
    opts = parse(INIT_FLAGS, args)
    kubeconfig = opts["kube-config"]
    try:
        data = cluster.load(kubeconfig)
    except FileNotFoundError:
        return fail(f"failed to get kubeconfig: stat {kubeconfig}: no such file or directory")
    minor = int(re.sub(r"\D.*", "", data["version"].split(".")[1]))
    if minor < 11:
        return fail(
            f"kubernetes version {data['version']} is lower than the minimum required v1.11"
        )
    if not opts["force"] and sim.programs_running("cloudcore"):
        return fail("CloudCore is already running on this node, please run reset to clean up first")
    print("Kubernetes version verification passed, KubeEdge installation will start...")
    sets = rebuild_sets(opts["set"])
    profile = (
        dict(p.split("=", 1) for p in opts["profile"].split(",") if "=" in p)
        if opts["profile"]
        else {}
    )
    tag = sets.get("cloudCore.image.tag") or profile.get("version") or OFFLINE_DEFAULT_TAG
    advertise = [a for a in (opts["advertise-address"] or "").split(",") if a]
    if opts["dry-run"]:
        print(f"dry run: would install cloudcore {tag} advertising {advertise}")
        return 0
    cluster.reconcile(kubeconfig)
    with cluster.update(kubeconfig) as data:
        release = helm.last(data, "kubeedge", "cloudcore")
        version = int(release["version"]) + 1 if release else 1
        if release is not None and release["status"] in helm.PENDING:
            refused = helm.ERR_PENDING
        elif "kubeedge" in data["terminating"]:
            # install.go line 340: the release record is a Secret in the namespace
            # (storage/driver/secrets.go line 164: errors.Wrap(err, "create: failed to create")).
            refused = (
                f'create: failed to create: secrets "sh.helm.release.v1.cloudcore.v{version}" is '
                "forbidden: unable to create new content in namespace kubeedge because it is being terminated"
            )
        else:
            refused = ""
            if "kubeedge" not in data["namespaces"]:
                data["namespaces"].append("kubeedge")
            helm.record(data, "kubeedge", "cloudcore", version,
                        "pending-upgrade" if release else "pending-install")  # fmt: skip
            cluster.stop_pod(data)  # a new pod template rolls the pod
            data["deployments"]["kubeedge/cloudcore"] = {
                "image": f"kubeedge/cloudcore:{tag}", "tolerations": tolerations_from(sets),
                "advertiseAddress": advertise, "node": None, "phase": "Pending", "available": False,
            }  # fmt: skip
            cluster.start_cloudcore(data)
    if refused:
        return fail(refused)
    cluster.reconcile(kubeconfig)
    # installer.go@v1.13.0 lines 299-305, 318-323: Wait with DefaultHelmTimeout (60 s)
    # unless --force; the record says pending until the wait ends. Killed here, it stays so.
    deadline = time.monotonic() + (
        0 if opts["force"] else min(float(sim.load(root, "keadm").get("init_wait_s", 60)), 600)
    )
    while not cluster.ready(cluster.load(kubeconfig)["deployments"]["kubeedge/cloudcore"]):
        if opts["force"]:
            break
        if time.monotonic() >= deadline:
            with cluster.update(kubeconfig) as data:
                helm.finish(data, "kubeedge", "cloudcore", version, ok=False)
            return fail("timed out waiting for the condition")
        time.sleep(0.1)  # helm's readiness poll (every 2 s in helm)
        cluster.reconcile(kubeconfig)
    with cluster.update(kubeconfig) as data:
        helm.finish(data, "kubeedge", "cloudcore", version, ok=True)
    # installer.go lines 140-152
    print("CLOUDCORE started")
    print("=========CHART DETAILS=======")
    print("NAME: cloudcore")
    print(f"LAST DEPLOYED: {time.strftime('%a %b %e %H:%M:%S %Y')}")
    print("NAMESPACE: kubeedge")
    print("STATUS: deployed")
    print(f"REVISION: {version}")
    return 0


def cmd_gettoken(args: list[str], root: Path) -> int:
    opts = parse(GETTOKEN_FLAGS, args)
    try:
        cluster.reconcile(opts["kube-config"])
        data = cluster.load(opts["kube-config"])
    except FileNotFoundError:
        return fail(
            f"failed to get kubeconfig: stat {opts['kube-config']}: no such file or directory"
        )
    secret = data["secrets"].get("kubeedge/tokensecret")
    if secret is None:
        # cloud/gettoken.go@v1.13.0: fmt.Printf("failed to get token, err is %s\n", err)
        # on stdout, then the client-go error itself goes up to cobra.
        print('failed to get token, err is secrets "tokensecret" not found', flush=True)
        return fail('secrets "tokensecret" not found')
    print(base64.b64decode(secret["tokendata"]).decode())
    return 0


def reset_cloud(kubeconfig: str) -> bool:
    """Cloud role: any pod in namespace kubeedge. Deletes the namespace (CRDs stay)."""
    try:
        data = cluster.load(kubeconfig)
    except FileNotFoundError:
        return False
    if not any(k.startswith("kubeedge/") for k in data["deployments"]):
        return False
    cluster.stop_pod(data)
    # The namespace stays, Terminating, until the namespace controller has emptied it.
    data["terminating"]["kubeedge"] = time.time() + float(data["termination_s"])
    for table in ("deployments", "secrets"):
        data[table] = {k: v for k, v in data[table].items() if not k.startswith("kubeedge/")}
    cluster.save(kubeconfig, data)
    print('namespace "kubeedge" deleted')
    return True

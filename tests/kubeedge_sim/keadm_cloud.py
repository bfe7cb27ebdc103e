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
from typing import Any

from kedge.names import version_tuple
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


def _minor(root: Path) -> tuple[int, int]:
    return version_tuple(sim.load(root, "keadm").get("version", "v1.13.0"))[:2]


def _tag(opts: dict[str, Any], sets: dict[str, str], root: Path) -> str:
    """The image tag: v1.13 reads only --profile version= (else its offline default);
    from v1.14 cloud/init.go reads --kubeedge-version (util.GetCurrentVersion, which falls
    back to keadm's own version offline), and appendDefaultSets makes it the image tag."""
    profile = (dict(p.split("=", 1) for p in opts["profile"].split(",") if "=" in p)
               if opts["profile"] else {})  # fmt: skip
    if _minor(root) <= (1, 13):
        return sets.get("cloudCore.image.tag") or profile.get("version") or OFFLINE_DEFAULT_TAG
    version = (
        opts["kubeedge-version"] or profile.get("version") or sim.load(root, "keadm")["version"]
    )
    return sets.get("cloudCore.image.tag") or ("v" + version.removeprefix("v"))


def cmd_init(args: list[str], root: Path) -> int:
    flags = INIT_FLAGS + ([Flag("image-repository")] if _minor(root) >= (1, 14) else [])
    opts = parse(flags, args)
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
    sets = rebuild_sets(opts["set"])
    tag = _tag(opts, sets, root)
    if _minor(root) <= (1, 13):
        print("Kubernetes version verification passed, KubeEdge installation will start...")
    else:  # helm/cloudcore.go@v1.23.1 Install()
        print(f"Kubernetes version verification passed, KubeEdge {tag} installation will start...")
        if helm.last(cluster.load(kubeconfig), "kubeedge", "cloudcore") is not None and _minor(
            root
        ) >= (1, 16):
            return fail(
                "the cloudcore release already exists, and you can upgrade the cloudcore using the `keadm upgrade`"
            )
    advertise = [a for a in (opts["advertise-address"] or "").split(",") if a]
    if opts["dry-run"]:
        print(f"dry run: would install cloudcore {tag} advertising {advertise}")
        return 0
    return _helm_install_or_upgrade(root, kubeconfig, tag, sets, advertise, force=opts["force"])


def _helm_install_or_upgrade(root: Path, kubeconfig: str, tag: str, sets: dict[str, str],
                             advertise: list[str], *, force: bool) -> int:  # fmt: skip
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
        0 if force else min(float(sim.load(root, "keadm").get("init_wait_s", 60)), 600)
    )
    while not cluster.ready(cluster.load(kubeconfig)["deployments"]["kubeedge/cloudcore"]):
        if force:
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


UPGRADE_FLAGS = [
    Flag("kubeedge-version"), Flag("advertise-address"), Flag("kube-config", None, "/root/.kube/config"),
    Flag("dry-run", "d", False, "bool"), Flag("set", None, None, "stringArray"),
    Flag("values", None, None, "stringArray"), Flag("force", None, False, "bool"), Flag("profile"),
    Flag("external-helm-root"), Flag("reuse-values", None, False, "bool"),
    Flag("print-final-values", None, False, "bool"), Flag("image-repository"),
]  # fmt: skip


def cmd_upgrade_cloud(args: list[str], root: Path) -> int:
    """helm/cloudcore.go@v1.23.1 Upgrade(): a Helm upgrade of the existing release; with
    --reuse-values the last release's values stay and the flags merge over them."""
    opts = parse(UPGRADE_FLAGS, args)
    kubeconfig = opts["kube-config"]
    try:
        data = cluster.load(kubeconfig)
    except FileNotFoundError:
        return fail(f"failed to get kubeconfig: stat {kubeconfig}: no such file or directory")
    print("Kubernetes version verification passed, KubeEdge upgradation will start...")
    if helm.last(data, "kubeedge", "cloudcore") is None:
        return fail(
            "the cloudcore release not found, and you can init the cloudcore using the `keadm init`"
        )
    sets = rebuild_sets(opts["set"])
    tag = sets.get("cloudCore.image.tag") or "v" + (
        opts["kubeedge-version"] or sim.load(root, "keadm")["version"]
    ).removeprefix("v")
    advertise = [a for a in (opts["advertise-address"] or "").split(",") if a]
    previous = data["deployments"].get("kubeedge/cloudcore") or {}
    if opts["reuse-values"]:
        advertise = advertise or list(previous.get("advertiseAddress") or [])
        if not tolerations_from(sets):
            for i, t in enumerate(previous.get("tolerations") or []):
                sets |= {f"cloudCore.tolerations[{i}].{k}": v for k, v in t.items()}
    if opts["dry-run"]:
        print(f"dry run: would upgrade cloudcore to {tag} advertising {advertise}")
        return 0
    return _helm_install_or_upgrade(root, kubeconfig, tag, sets, advertise, force=opts["force"])


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

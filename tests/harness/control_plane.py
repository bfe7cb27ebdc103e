"""A real Kubernetes control plane and a real cloudcore inside a Sandbox: Debian's etcd,
the real kube-apiserver (and the controller manager's node lifecycle, where a test needs
Ready → Unknown), the namespace and custom resources cloudcore watches, and cloudcore
run as a process configured as keadm/helm would configure it. Set up as
../shared/kubeedge/README.md saw it working on this machine kind.

The custom resource definitions are the project's own minimal ones (group, versions,
kind, scope, any fields): cloudcore needs the resources to exist, not their schemas;
the table is read from build/crds/ of KubeEdge at each tag."""

from __future__ import annotations

import datetime
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.harness.real_binaries import Missing, binary, release
from tests.harness.sandbox import ADDRESS, Sandbox
from tests.harness.wait import wait_for

API_PORT = 6443
API = f"https://{ADDRESS}:{API_PORT}"
ETCD = "/usr/bin/etcd"
# (group, versions, kind, plural, scope) of what cloudcore watches, per release.
CRDS: dict[str, list[tuple[str, tuple[str, ...], str, str, str]]] = {
    "v1.13.0": [
        ("apps.kubeedge.io", ("v1alpha1",), "EdgeApplication", "edgeapplications", "Namespaced"),
        ("apps.kubeedge.io", ("v1alpha1",), "NodeGroup", "nodegroups", "Cluster"),
        ("devices.kubeedge.io", ("v1alpha2",), "Device", "devices", "Namespaced"),
        ("devices.kubeedge.io", ("v1alpha2",), "DeviceModel", "devicemodels", "Namespaced"),
        ("operations.kubeedge.io", ("v1alpha1",), "NodeUpgradeJob", "nodeupgradejobs", "Cluster"),
        (
            "reliablesyncs.kubeedge.io",
            ("v1alpha1",),
            "ClusterObjectSync",
            "clusterobjectsyncs",
            "Cluster",
        ),
        ("reliablesyncs.kubeedge.io", ("v1alpha1",), "ObjectSync", "objectsyncs", "Namespaced"),
        ("rules.kubeedge.io", ("v1",), "Rule", "rules", "Namespaced"),
        ("rules.kubeedge.io", ("v1",), "RuleEndpoint", "ruleendpoints", "Namespaced"),
    ],
    "v1.23.1": [
        ("apps.kubeedge.io", ("v1alpha1",), "EdgeApplication", "edgeapplications", "Namespaced"),
        ("apps.kubeedge.io", ("v1alpha1",), "NodeGroup", "nodegroups", "Cluster"),
        ("devices.kubeedge.io", ("v1alpha2", "v1beta1"), "Device", "devices", "Namespaced"),
        (
            "devices.kubeedge.io",
            ("v1alpha2", "v1beta1"),
            "DeviceModel",
            "devicemodels",
            "Namespaced",
        ),
        (
            "devices.kubeedge.io",
            ("v1alpha2", "v1beta1"),
            "DeviceStatus",
            "devicestatuses",
            "Namespaced",
        ),
        ("operations.kubeedge.io", ("v1alpha2",), "ConfigUpdateJob", "configupdatejobs", "Cluster"),
        (
            "operations.kubeedge.io",
            ("v1alpha1", "v1alpha2"),
            "ImagePrePullJob",
            "imageprepulljobs",
            "Cluster",
        ),
        (
            "operations.kubeedge.io",
            ("v1alpha1", "v1alpha2"),
            "NodeUpgradeJob",
            "nodeupgradejobs",
            "Cluster",
        ),
        (
            "policy.kubeedge.io",
            ("v1alpha1",),
            "ServiceAccountAccess",
            "serviceaccountaccesses",
            "Namespaced",
        ),
        (
            "reliablesyncs.kubeedge.io",
            ("v1alpha1",),
            "ClusterObjectSync",
            "clusterobjectsyncs",
            "Cluster",
        ),
        ("reliablesyncs.kubeedge.io", ("v1alpha1",), "ObjectSync", "objectsyncs", "Namespaced"),
        ("rules.kubeedge.io", ("v1",), "Rule", "rules", "Namespaced"),
        ("rules.kubeedge.io", ("v1",), "RuleEndpoint", "ruleendpoints", "Namespaced"),
    ],
}


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_key(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def _cert(subject: x509.Name, key: rsa.RSAPrivateKey, issuer: x509.Name,
          signer: rsa.RSAPrivateKey, *, ca: bool = False,
          sans: list[x509.GeneralName] | None = None) -> x509.Certificate:  # fmt: skip
    now = datetime.datetime.now(datetime.UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(signer, hashes.SHA256())


@dataclass
class Pki:
    """A CA, the API server's serving certificate, an admin (system:masters) client
    certificate and the service-account key pair, as files under `where`."""

    where: Path
    files: dict[str, Path] = field(default_factory=dict)

    def make(self) -> Pki:
        import ipaddress

        self.where.mkdir(parents=True, exist_ok=True)
        ca_key = _key()
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kedge-test-ca")])
        ca = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
        server_key, admin_key, sa_key = _key(), _key(), _key()
        sans: list[x509.GeneralName] = [
            x509.IPAddress(ipaddress.ip_address(ip)) for ip in (ADDRESS, "127.0.0.1", "10.96.0.1")
        ] + [x509.DNSName(n) for n in ("kubernetes", "kubernetes.default", "localhost")]
        server = _cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
                       server_key, ca_name, ca_key, sans=sans)  # fmt: skip
        admin_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                                x509.NameAttribute(NameOID.COMMON_NAME, "kedge-test-admin")])  # fmt: skip
        admin = _cert(admin_name, admin_key, ca_name, ca_key)
        pem = serialization.Encoding.PEM
        for name, data in {
            "ca.crt": ca.public_bytes(pem),
            "apiserver.crt": server.public_bytes(pem),
            "apiserver.key": _pem_key(server_key),
            "admin.crt": admin.public_bytes(pem),
            "admin.key": _pem_key(admin_key),
            "sa.key": _pem_key(sa_key),
            "sa.pub": sa_key.public_key().public_bytes(
                pem, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        }.items():
            path = self.where / name
            path.write_bytes(data)
            path.chmod(0o600)
            self.files[name] = path
        return self

    def kubeconfig(self, path: Path) -> Path:
        f = self.files
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": API, "certificate-authority": str(f["ca.crt"])}}],
            "users": [{"name": "admin", "user": {"client-certificate": str(f["admin.crt"]),
                                                 "client-key": str(f["admin.key"])}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
        }))  # fmt: skip
        path.chmod(0o600)
        return path


@dataclass
class ControlPlane:
    """etcd + kube-apiserver (+ the node lifecycle controller) in `box`."""

    box: Sandbox
    work: Path
    pki: Pki | None = None
    kubeconfig: Path | None = None

    def start(self, *, node_lifecycle: bool = False, workloads: bool = False) -> ControlPlane:
        """`node_lifecycle`: the controller that marks a silent Node Unknown; `workloads`:
        those that make pods from Deployments and what every pod mounts."""
        if shutil.which("etcd") is None and not Path(ETCD).exists():
            raise Missing(
                "etcd is not installed (apt install etcd-server; `make test` installs it)"
            )
        self.work.mkdir(parents=True, exist_ok=True)
        self.pki = Pki(self.work / "pki").make()
        self.kubeconfig = self.pki.kubeconfig(self.work / "admin.conf")
        f = self.pki.files
        self.box.spawn([ETCD, "--data-dir", str(self.work / "etcd"), "--listen-client-urls",
                        "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
                        "--listen-peer-urls", "http://127.0.0.1:2380"], self.work / "etcd.log")  # fmt: skip
        self.box.spawn([str(binary("k8s/kube-apiserver")),
                        "--etcd-servers=http://127.0.0.1:2379", f"--advertise-address={ADDRESS}",
                        f"--secure-port={API_PORT}", f"--tls-cert-file={f['apiserver.crt']}",
                        f"--tls-private-key-file={f['apiserver.key']}", f"--client-ca-file={f['ca.crt']}",
                        f"--service-account-key-file={f['sa.pub']}",
                        f"--service-account-signing-key-file={f['sa.key']}",
                        "--service-account-issuer=https://kubernetes.default.svc",
                        "--service-cluster-ip-range=10.96.0.0/12", "--authorization-mode=Node,RBAC",
                        "--allow-privileged=true"], self.work / "apiserver.log")  # fmt: skip
        wait_for(
            lambda: self.get("/readyz", raw=True) == "ok", timeout=60, what="kube-apiserver ready"
        )
        controllers = [
            *(["nodelifecycle"] if node_lifecycle else []),
            # kube-root-ca.crt, which every pod's projected token volume reads: without
            # it the real edged leaves the pod in ContainerCreating.
            *(
                ["deployment", "replicaset", "serviceaccount", "root-ca-cert-publisher"]
                if workloads
                else []
            ),
        ]
        if controllers:
            self.box.spawn(
                [
                    str(binary("k8s/kube-controller-manager")),
                    f"--kubeconfig={self.kubeconfig}",
                    f"--controllers={','.join(controllers)}",
                    f"--root-ca-file={f['ca.crt']}",
                    "--node-monitor-grace-period=20s",
                    "--leader-elect=false",
                ],
                self.work / "controller-manager.log",
            )
        return self

    # -- the API, from inside the sandbox (curl: the API server is in its network) ----
    def _curl(self, method: str, path: str, body: Any = None) -> tuple[int, str]:
        assert self.pki is not None
        f = self.pki.files
        argv = ["curl", "-sS", "-X", method, "--cacert", str(f["ca.crt"]), "--cert",
                str(f["admin.crt"]), "--key", str(f["admin.key"]), "-w", "\n%{http_code}",
                "-H", "Content-Type: application/json"]  # fmt: skip
        if body is not None:
            argv += ["--data-binary", json.dumps(body)]
        done = self.box.run(*argv, API + path, timeout=30)
        text, _, code = done.stdout.rpartition("\n")
        return (int(code) if code.isdigit() else 0), text

    def get(self, path: str, *, raw: bool = False) -> Any:
        status, text = self._curl("GET", path)
        if raw:
            return text if status == 200 else None
        return json.loads(text) if status == 200 else None

    def node_ready(self, name: str) -> dict[str, str] | None:
        """The Node's nodeInfo once its Ready condition is True, else None."""
        if self.ready_status(name) != "True":
            return None
        return dict(self.get(f"/api/v1/nodes/{name}")["status"]["nodeInfo"])

    def wait_ready(self, name: str, timeout: float = 180) -> dict[str, str]:
        """The Node's nodeInfo once Ready; on timeout, an error naming its conditions."""
        try:
            return wait_for(
                lambda: self.node_ready(name), timeout=timeout, what=f"Node {name} Ready"
            )
        except TimeoutError as exc:
            node = self.get(f"/api/v1/nodes/{name}")
            conditions = [
                f"{c['type']}={c['status']} ({c.get('reason', '')}: {c.get('message', '')})"
                for c in (node or {}).get("status", {}).get("conditions", [])
            ]
            raise TimeoutError(f"{exc}; the Node: {conditions if node else 'none'}") from None

    def ready_status(self, name: str) -> str | None:
        """The Node's Ready condition: "True", "False", "Unknown", or None (no Node)."""
        node = self.get(f"/api/v1/nodes/{name}")
        for c in (node or {}).get("status", {}).get("conditions", []):
            if c["type"] == "Ready":
                return str(c["status"])
        return None

    def bind_pods_by_hostname(self) -> int:
        """What kube-scheduler (not among the binaries) would do for a pod pinned by its
        nodeSelector on kubernetes.io/hostname: bind it to that Node. How many it bound."""
        pending = self.get("/api/v1/pods?fieldSelector=spec.nodeName%3D") or {"items": []}
        bound = 0
        for pod in pending["items"]:
            node = (pod["spec"].get("nodeSelector") or {}).get("kubernetes.io/hostname")
            if node is None:
                continue
            meta = pod["metadata"]
            binding = {
                "apiVersion": "v1",
                "kind": "Binding",
                "metadata": {"name": meta["name"]},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            }
            path = f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}/binding"
            status, _ = self._curl("POST", path, binding)
            bound += status == 201
        return bound

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        status, text = self._curl("POST", path, body)
        if status not in (200, 201, 409):
            raise RuntimeError(f"POST {path}: {status} {text[:300]}")
        return dict(json.loads(text))

    def install_kubeedge_resources(self, version: str) -> None:
        """The kubeedge namespace and the custom resources cloudcore watches."""
        self.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": "kubeedge"}})  # fmt: skip
        any_fields = {
            "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        }
        for group, versions, kind, plural, scope in CRDS[version]:
            self.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", {
                "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
                "metadata": {"name": f"{plural}.{group}"},
                "spec": {"group": group, "scope": scope,
                         "names": {"kind": kind, "plural": plural, "singular": kind.lower(),
                                   "listKind": f"{kind}List"},
                         "versions": [{"name": v, "served": True, "storage": i == len(versions) - 1,
                                       "schema": any_fields, "subresources": {"status": {}}}
                                      for i, v in enumerate(versions)]},
            })  # fmt: skip
        for group, versions, _, plural, _ in CRDS[version]:
            wait_for(lambda g=group, v=versions[-1], p=plural: self.get(f"/apis/{g}/{v}/{p}") is not None,  # type: ignore[misc]
                     timeout=30, what=f"{plural}.{group} served")  # fmt: skip


def future_cloudcore_secrets(plane: ControlPlane, not_before: datetime.datetime) -> None:
    """casecret and cloudcoresecret valid only from `not_before`, stored before cloudcore
    starts: cloudcore then serves them instead of making its own (createCAToSecret and
    createCertsToSecret, cloud/pkg/cloudhub/servers/httpserver/pre_server.go@v1.23.1: EC
    keys, DER). To a board this is the certificate its clock is behind — the field
    guide's clock pitfall, with the machine's clock left alone."""
    import base64
    import ipaddress

    from cryptography.hazmat.primitives.asymmetric import ec

    def der(data: bytes) -> str:
        return base64.b64encode(data).decode()

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "KubeEdge")])
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    until = not_before + datetime.timedelta(days=365)

    def valid_from_not_before(public: ec.EllipticCurvePublicKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(until)
        )

    ca = (
        valid_from_not_before(ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server = (
        valid_from_not_before(key.public_key())
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ADDRESS))]),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    sec1 = serialization.PrivateFormat.TraditionalOpenSSL
    raw = serialization.Encoding.DER
    nothing = serialization.NoEncryption()
    for secret, data in (
        (
            "casecret",
            {
                "cadata": der(ca.public_bytes(raw)),
                "cakeydata": der(ca_key.private_bytes(raw, sec1, nothing)),
            },
        ),
        (
            "cloudcoresecret",
            {
                "cloudcoredata": der(server.public_bytes(raw)),
                "cloudcorekeydata": der(key.private_bytes(raw, sec1, nothing)),
            },
        ),
    ):
        plane.create(
            "/api/v1/namespaces/kubeedge/secrets",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": secret, "namespace": "kubeedge"},
                "data": data,
            },
        )


@dataclass
class Cloudcore:
    """cloudcore of `version` as a process, configured as keadm init would: the admin
    kubeconfig, ADDRESS advertised, no iptables manager."""

    box: Sandbox
    plane: ControlPlane
    version: str
    work: Path

    def start(self) -> Cloudcore:
        binaries = release(self.version)
        self.work.mkdir(parents=True, exist_ok=True)
        config = yaml.safe_load(self.box.check(str(binaries["cloudcore"]), "--defaultconfig"))
        config["kubeAPIConfig"]["kubeConfig"] = str(self.plane.kubeconfig)
        config["modules"]["cloudHub"]["advertiseAddress"] = [ADDRESS]
        if "iptablesManager" in config["modules"]:
            config["modules"]["iptablesManager"]["enable"] = False
        # Its unix socket (/var/lib/kubeedge/kubeedge.sock) kept out of the edge's data
        # directory: in the sandbox the master and the board share one filesystem.
        unix = config["modules"]["cloudHub"].get("unixsocket")
        if isinstance(unix, dict):
            unix["address"] = f"unix://{self.work / 'kubeedge.sock'}"
        path = self.work / "cloudcore.yaml"
        path.write_text(yaml.safe_dump(config))
        self.box.spawn(
            [str(binaries["cloudcore"]), "--config", str(path)], self.work / "cloudcore.log"
        )
        wait_for(lambda: self.plane.get("/api/v1/namespaces/kubeedge/secrets/tokensecret") is not None,
                 timeout=90, what="cloudcore's tokensecret")  # fmt: skip
        return self

    def token(self) -> str:
        keadm = release(self.version)["keadm"]
        out = self.box.check(str(keadm), "gettoken", "--kube-config", str(self.plane.kubeconfig))
        return out.strip().splitlines()[-1]

"""The real KubeEdge and Kubernetes binaries the project's tests run (../shared/kubeedge:
keadm, edgecore and cloudcore of v1.13.0 and v1.23.1, kube-apiserver and
kube-controller-manager, the static pause binary), unpacked once into a cache and
checked against SHA256SUMS before any is run.

A test that needs them and cannot have them fails with `Missing`, naming what is
missing and where it was looked for: it never skips."""

from __future__ import annotations

import hashlib
import lzma
import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Where the binaries are: beside the project's checkout (CI: ../shared), or where
# KEDGE_TEST_KUBEEDGE points.
DEFAULT_SHARED = REPO.parent / "shared" / "kubeedge"
CACHE = Path(os.environ.get("KEDGE_TEST_CACHE", "/var/cache/kedge-tests")) / "kubeedge"
RELEASES = ("v1.13.0", "v1.23.1")


class Missing(AssertionError):
    """A real binary the test needs is not to be had (the message says which and why)."""


def shared_dir() -> Path:
    return Path(os.environ.get("KEDGE_TEST_KUBEEDGE", str(DEFAULT_SHARED)))


def _digests(shared: Path) -> dict[str, str]:
    sums = shared / "SHA256SUMS"
    try:
        lines = sums.read_text().splitlines()
    except OSError as exc:
        raise Missing(
            f"{sums}: {exc.strerror or exc}: the real KubeEdge binaries are not there "
            "(set KEDGE_TEST_KUBEEDGE to the folder holding SHA256SUMS and the .xz files)"
        ) from None
    found: dict[str, str] = {}
    for line in lines:
        digest, _, name = line.strip().partition("  ")
        if digest and name:
            found[name] = digest
    return found


def binary(name: str) -> Path:
    """`name` as SHA256SUMS names it (`v1.23.1/edgecore`, `k8s/kube-apiserver`,
    `tools/pause`), unpacked, checked and executable; Missing otherwise."""
    shared = shared_dir()
    digests = _digests(shared)
    if name not in digests:
        raise Missing(f"{shared / 'SHA256SUMS'} lists no {name}")
    digest = digests[name]
    target = CACHE / digest / Path(name).name
    if target.exists() and _sha256(target) == digest:
        return target
    packed = shared / f"{name}.xz"
    if not packed.exists():
        raise Missing(f"{packed} is missing (listed in {shared / 'SHA256SUMS'})")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Unpacked beside the target and renamed: a test run killed half-way leaves no
    # half-written binary under the name.
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".unpack-")
    try:
        with os.fdopen(fd, "wb") as out, lzma.open(packed) as src:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        got = _sha256(Path(tmp))
        if got != digest:
            raise Missing(f"{packed} unpacks to sha256 {got}, not {digest} as SHA256SUMS says")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def release(version: str) -> dict[str, Path]:
    """keadm, edgecore and cloudcore of a release."""
    if version not in RELEASES:
        raise Missing(f"no real binaries of {version} (there are: {', '.join(RELEASES)})")
    return {n: binary(f"{version}/{n}") for n in ("keadm", "edgecore", "cloudcore")}

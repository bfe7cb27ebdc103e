"""Helm v3.7.2's release records (vendored by keadm v1.13.0), as its secrets driver keeps
them: one Secret per revision, `sh.helm.release.v1.<name>.v<N>`, labelled owner=helm,
name, status and version, in the release's namespace.

What keadm init relies on (keadm/cmd/keadm/app/cmd/helm/installer.go@v1.13.0,
runHelmInstall): `cfg.Releases.Last(name)` not found → install, else upgrade; without
--force both wait up to DefaultHelmTimeout (60 s). The record is written *before* the
wait with a pending status and rewritten after it — so a keadm killed in its wait
leaves `pending-install`, and every later upgrade stops at
vendor/helm.sh/helm/v3/pkg/action/upgrade.go line 180:
    if lastRelease.Info.Status.IsPending() { return nil, nil, errPending }
(action.go line 62: "another operation (install/upgrade/rollback) is in progress").
A `failed` or `superseded` last release may be upgraded (upgrade.go lines 192-193)."""

from __future__ import annotations

from typing import Any

PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
ERR_PENDING = "another operation (install/upgrade/rollback) is in progress"


def _key(namespace: str, name: str, version: int) -> str:
    return f"{namespace}/sh.helm.release.v1.{name}.v{version}"


def revisions(data: dict[str, Any], namespace: str, name: str) -> list[dict[str, str]]:
    found = [
        s["labels"]
        for key, s in data["secrets"].items()
        if key.startswith(f"{namespace}/")
        and s.get("labels", {}).get("owner") == "helm"
        and s["labels"].get("name") == name
    ]
    return sorted(found, key=lambda labels: int(labels["version"]))


def last(data: dict[str, Any], namespace: str, name: str) -> dict[str, str] | None:
    found = revisions(data, namespace, name)
    return found[-1] if found else None


def record(data: dict[str, Any], namespace: str, name: str, version: int, status: str) -> None:
    data["secrets"][_key(namespace, name, version)] = {
        "type": "helm.sh/release.v1",
        "labels": {"owner": "helm", "name": name, "status": status, "version": str(version)},
    }


def finish(data: dict[str, Any], namespace: str, name: str, version: int, ok: bool) -> None:
    """After the wait: deployed (the earlier deployed one superseded), or failed."""
    if ok:
        for labels in revisions(data, namespace, name):
            if labels["status"] == "deployed":
                record(data, namespace, name, int(labels["version"]), "superseded")
    record(data, namespace, name, version, "deployed" if ok else "failed")

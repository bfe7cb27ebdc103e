"""Validation of every name that can end up in argv, a path, a URL or an MQTT topic."""

from __future__ import annotations

import re

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_IPV6 = r"\[[0-9A-Fa-f:.]+\]"
_PORT = r"(?:6553[0-5]|655[0-2]\d|65[0-4]\d{2}|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3})"
HOSTPORT_RE = re.compile(rf"(?:{_LABEL}(?:\.{_LABEL})*|{_IPV6}):{_PORT}")
VERSION_RE = re.compile(r"v(\d+)\.(\d+)\.(\d+)")
TOKEN_CHARS_RE = re.compile(r"[A-Za-z0-9._=-]{1,4096}")
IMAGE_REPOSITORY_RE = re.compile(
    r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::\d+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
)
LABEL_KEY_RE = re.compile(
    r"(?:[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?/)?[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
)
LABEL_VALUE_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?)?")
TOPIC_LEVELS_RE = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*")
HTTP_URL_RE = re.compile(r"https?://[^\s/]+(?:/\S*)?")
_DNS1123_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
DNS1123_SUBDOMAIN_RE = re.compile(rf"{_DNS1123_LABEL}(?:\.{_DNS1123_LABEL})*")


def is_dns1123_subdomain(name: str) -> bool:
    """Kubernetes' rule for node names: what keadm silently replaces otherwise."""
    return len(name) <= 253 and DNS1123_SUBDOMAIN_RE.fullmatch(name) is not None


def suggest_dns1123(name: str) -> str:
    """The closest valid node name: lower case, other characters replaced with '-'."""
    lowered = re.sub(r"[^a-z0-9.-]+", "-", name.lower())
    labels = [part.strip("-") for part in lowered.split(".")]
    cleaned = ".".join(p for p in labels if p)[:253].strip(".-")
    return cleaned or "edge-node"


def split_hostport(value: str) -> tuple[str, int]:
    """'host:port' or '[v6]:port' into host (brackets removed) and port."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def ntp_server(item: str) -> tuple[str, int]:
    """An `ntp_servers` entry ('host', 'host:port', '[v6]:port' or a bare IPv6) as
    (host, port), port 123 unless given."""
    if item.count(":") == 1 or item.startswith("["):
        return split_hostport(item)
    return item, 123


def check_release_tag(tag: str) -> str:
    """For settings: a KubeEdge release tag (the one form keadm and images accept)."""
    if not VERSION_RE.fullmatch(tag):
        raise ValueError("expected a release tag like v1.13.0")
    return tag


def version_tuple(tag: str) -> tuple[int, int, int]:
    m = VERSION_RE.fullmatch(tag)
    if m is None:
        raise ValueError(f"not a release tag: {tag!r}")
    return int(m[1]), int(m[2]), int(m[3])

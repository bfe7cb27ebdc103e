"""The first-boot seed: a small TOML file on a board's boot partition that lets a freshly
flashed board enroll by itself (issue 16; docs/firstboot.md).

It holds where the cloud API is, how to trust it (a pinned SHA-256 fingerprint of its
certificate, or its CA in PEM) and an enrollment secret — never a KubeEdge token or a
broker password, which enrollment hands out when the board asks, current at that
moment. The cloud side writes it (`kedge-cloud-api seed create`), the board side copies
it onto a mounted boot partition (`kedge-agent seed --write`) and reads it at first boot.
"""

from __future__ import annotations

import re
import tomllib
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from kedge.errors import ConfigError, first_problem
from kedge.names import LABEL_KEY_RE, LABEL_VALUE_RE, is_dns1123_subdomain
from kedge.wire.commands import MUTATING_ACTIONS

# Looked for in this order; the first one present wins (docs/firstboot.md).
SEED_PATHS = ("/boot/firmware/kedge-seed.toml", "/boot/kedge-seed.toml")
SEED_NAME = "kedge-seed.toml"
MAX_SEED_BYTES = 64 * 1024
PLACEHOLDERS = ("serial", "mac", "hostname")
_URL_RE = re.compile(r"https?://[A-Za-z0-9.\-\[\]:]{1,255}(:\d{1,5})?/?")
_SHA256_RE = re.compile(r"(?:[0-9a-f]{2}:?){31}[0-9a-f]{2}")
_PATTERN_RE = re.compile(r"[a-z0-9.\-{}]{1,200}")
# What a placeholder may become: the board's serial and MAC are reduced to these.
SAMPLE = {"serial": "0123456789abcdef", "mac": "0242ac110002", "hostname": "rk3000"}


def _pattern(value: str) -> str:
    if not _PATTERN_RE.fullmatch(value):
        raise ValueError(
            "use lower-case letters, digits, '-', '.' and the placeholders "
            + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
        )
    unknown = set(re.findall(r"{([^}]*)}", value)) - set(PLACEHOLDERS)
    if unknown:
        raise ValueError(f"unknown placeholder {{{sorted(unknown)[0]}}}")
    if not is_dns1123_subdomain(render_name(value, SAMPLE)):
        raise ValueError("does not make a valid node name (a DNS-1123 subdomain)")
    return value


class Seed(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    cloud_api: str = Field(description="the cloud API's URL, as the boards reach it")
    ca_sha256: str | None = Field(
        None, description="SHA-256 of the API's certificate (DER), pinned"
    )
    ca_pem: str | None = Field(None, max_length=16384, description="or the CA that signed it")
    secret: SecretStr = Field(description="an enrollment secret (kedge-cloud-api secret create)")
    node_name: Annotated[str, AfterValidator(_pattern)] = Field(
        "{hostname}", description="the node name, with {serial}, {mac}, {hostname}"
    )
    labels: dict[str, str] = Field(default_factory=dict)
    allow_remote: list[str] = Field(default_factory=list)
    registry_mirrors: list[str] = Field(default_factory=list, max_length=8)
    images_archive: str | None = Field(
        None, description="a `docker save` archive beside the seed, for offline boards"
    )

    @field_validator("cloud_api")
    @classmethod
    def _url(cls, v: str) -> str:
        if not _URL_RE.fullmatch(v):
            raise ValueError("expected http://HOST:PORT or https://HOST:PORT")
        return v.rstrip("/")

    @field_validator("ca_sha256")
    @classmethod
    def _fingerprint(cls, v: str | None) -> str | None:
        if v is None:
            return None
        if not _SHA256_RE.fullmatch(v.lower()):
            raise ValueError(
                "expected 64 hex digits (colons allowed), as openssl x509 -fingerprint -sha256 prints"
            )
        return v.lower().replace(":", "")

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: SecretStr) -> SecretStr:
        if not 1 <= len(v.get_secret_value()) <= 200 or not v.get_secret_value().isprintable():
            raise ValueError("expected the secret kedge-cloud-api secret create printed")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not LABEL_KEY_RE.fullmatch(key) or not LABEL_VALUE_RE.fullmatch(value):
                raise ValueError(f"{key}={value} is not a Kubernetes label")
        return v

    @field_validator("allow_remote")
    @classmethod
    def _allow(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if a not in MUTATING_ACTIONS]
        if bad:
            raise ValueError(f"{bad[0]!r}: expected fix, join, reset or upgrade")
        return v

    @field_validator("images_archive")
    @classmethod
    def _archive(cls, v: str | None) -> str | None:
        if v is not None and (not re.fullmatch(r"[A-Za-z0-9._-]{1,128}", v) or v.startswith(".")):
            raise ValueError("a file name beside the seed (no directories)")
        return v

    @model_validator(mode="after")
    def _trust(self) -> Seed:
        if self.cloud_api.startswith("https://") and not (self.ca_sha256 or self.ca_pem):
            raise ValueError(
                "an https cloud_api needs ca_sha256 or ca_pem: the board trusts nothing else"
            )
        if self.ca_sha256 and self.ca_pem:
            raise ValueError("give ca_sha256 or ca_pem, not both")
        return self


def reduced(fact: str) -> str:
    """A serial or MAC as names, allowlists and the cloud API compare it: lower-case
    letters and digits only (they come with ':' and upper case)."""
    return re.sub(r"[^a-z0-9]", "", fact.lower())


def render_name(pattern: str, facts: dict[str, str]) -> str:
    """The node name for this board: each placeholder replaced by the board's fact, reduced
    (a hostname keeps its '-' and '.')."""

    def value(m: re.Match[str]) -> str:
        fact = facts.get(m[1], "")
        return re.sub(r"[^a-z0-9.-]", "", fact.lower()) if m[1] == "hostname" else reduced(fact)

    return re.sub(r"{(serial|mac|hostname)}", value, pattern)


def parse(text: str, where: str) -> Seed:
    """The seed in `text`; ConfigError naming `where`, the key and the problem."""
    if len(text.encode()) > MAX_SEED_BYTES:
        raise ConfigError(f"{where}: larger than {MAX_SEED_BYTES // 1024} KiB: not a kedge seed")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML: {exc}") from None
    try:
        return Seed.model_validate(data)
    except ValidationError as exc:
        # The only whole-seed rules are about trusting the API: name the key that fixes them.
        raise ConfigError(f"{where}: {first_problem(exc, 'ca_sha256')}") from None


def dumps(seed: Seed) -> str:
    """The seed as TOML, secret included (it is written to a boot partition on purpose)."""

    def quoted(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'

    lines = ["# kedge first-boot seed: read once at first boot, then scrubbed (docs/firstboot.md)",
             f"cloud_api = {quoted(seed.cloud_api)}"]  # fmt: skip
    if seed.ca_sha256:
        lines.append(f"ca_sha256 = {quoted(seed.ca_sha256)}")
    if seed.ca_pem:
        lines.append(f'ca_pem = """\n{seed.ca_pem.strip()}\n"""')
    lines.append(f"secret = {quoted(seed.secret.get_secret_value())}")
    lines.append(f"node_name = {quoted(seed.node_name)}")
    for key in ("allow_remote", "registry_mirrors"):
        values: list[str] = getattr(seed, key)
        if values:
            lines.append(f"{key} = [{', '.join(quoted(v) for v in values)}]")
    if seed.images_archive:
        lines.append(f"images_archive = {quoted(seed.images_archive)}")
    if seed.labels:
        lines += [
            "",
            "[labels]",
            *(f"{quoted(k)} = {quoted(v)}" for k, v in sorted(seed.labels.items())),
        ]
    return "\n".join(lines) + "\n"


def as_dict(seed: Seed) -> dict[str, Any]:
    return seed.model_dump(mode="json", exclude={"secret"})

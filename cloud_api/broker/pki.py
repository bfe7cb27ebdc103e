"""The broker's certificates: a CA the cloud API owns (boards pin it) and the server
certificate it signs, made with the `openssl` command (Debian's openssl package), so the
bundled API needs no crypto library of its own."""

from __future__ import annotations

import ipaddress
import re
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kedge.errors import CommandError, UserError
from kedge.host import Host

CA_DAYS = 3650
SERVER_DAYS = 825  # what browsers accept for a server certificate; renewed by broker init
RENEW_BEFORE_S = 30 * 86400
OPENSSL_TIMEOUT_S = 60.0
_CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


class PkiError(UserError):
    """openssl refused or failed: the message says what it was doing."""


@dataclass(frozen=True)
class ServerCert:
    names: frozenset[str]  # its subjectAltName entries (DNS names, IPs as `normal` writes them)
    lasting: bool  # not expiring within RENEW_BEFORE_S
    signed_by_ca: bool

    def serves(self, names: list[str]) -> bool:
        return self.lasting and self.signed_by_ca and {normal(n) for n in names} <= self.names


def normal(name: str) -> str:
    """An IP address in one spelling (openssl prints IPv6 in full), a DNS name as is."""
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        return name


def san(names: list[str]) -> str:
    parts = []
    for name in names:
        try:
            parts.append(f"IP:{ipaddress.ip_address(name)}")
        except ValueError:
            parts.append(f"DNS:{name}")
    return ",".join(parts)


class Openssl:
    def __init__(self, host: Host) -> None:
        self.host = host

    async def _run(self, what: str, *args: str) -> str:
        try:
            result = await self.host.run(["openssl", *args], timeout=OPENSSL_TIMEOUT_S)
        except CommandError as exc:
            raise PkiError(f"{what}: {exc} (apt install openssl)") from exc
        if result.returncode != 0:
            raise PkiError(f"{what}: openssl said: {result.stderr.strip()[-400:]}")
        return result.stdout

    async def make_ca(self, key: Path, cert: Path, name: str) -> None:
        await self._run(
            "making the broker CA",
            "req", "-x509", *_CURVE, "-keyout", str(key), "-out", str(cert),
            "-days", str(CA_DAYS), "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    async def make_server(self, ca_key: Path, ca_cert: Path, key: Path, cert: Path,
                          names: list[str]) -> None:  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="kedge-pki-") as tmp:
            csr, ext = Path(tmp) / "server.csr", Path(tmp) / "server.ext"
            ext.write_text(
                f"subjectAltName={san(names)}\nbasicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            )
            await self._run(
                "making the broker's key", "req", "-new", *_CURVE, "-keyout", str(key),
                "-out", str(csr), "-subj", f"/CN={names[0]}",
            )  # fmt: skip
            await self._run(
                "signing the broker's certificate", "x509", "-req", "-in", str(csr),
                "-CA", str(ca_cert), "-CAkey", str(ca_key),
                "-set_serial", str(secrets.randbits(63)), "-days", str(SERVER_DAYS),
                "-extfile", str(ext), "-out", str(cert),
            )  # fmt: skip

    async def describe(self, ca_cert: Path, cert: Path) -> ServerCert:
        text = await self._run(
            f"reading {cert}", "x509", "-in", str(cert), "-noout", "-ext", "subjectAltName"
        )
        names = frozenset(normal(m[1]) for m in re.finditer(r"(?:DNS|IP Address):([^,\s]+)", text))
        # Both answer with their exit code: 1 is "expires soon" / "not signed by it".
        lasting = await self.host.run(
            ["openssl", "x509", "-in", str(cert), "-noout", "-checkend", str(RENEW_BEFORE_S)],
            timeout=OPENSSL_TIMEOUT_S,
        )
        verified = await self.host.run(
            ["openssl", "verify", "-CAfile", str(ca_cert), str(cert)], timeout=OPENSSL_TIMEOUT_S
        )
        return ServerCert(names=names, lasting=lasting.ok, signed_by_ca=verified.ok)

"""Just enough DER to read a certificate's validity window, without a crypto library.

The agent needs notBefore/notAfter of cloudcore's certificates (the clock pitfall) and
the SHA-256 of the CA's DER (the token's first part); pulling in `cryptography` for
that would triple the arm64 package.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime

_SEQUENCE = 0x30
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18
_EXPLICIT_0 = 0xA0


@dataclass(frozen=True)
class Validity:
    not_before: datetime
    not_after: datetime


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, value start, value end) of the element at pos."""
    if pos + 2 > len(data):
        raise ValueError("truncated DER")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, pos, pos + length


def _time(tag: int, raw: bytes) -> datetime:
    text = raw.decode("ascii")
    if tag == _UTC_TIME:
        fmt, text = "%y%m%d%H%M%SZ", text
    elif tag == _GENERALIZED_TIME:
        fmt = "%Y%m%d%H%M%SZ"
    else:
        raise ValueError(f"unexpected time tag 0x{tag:02x}")
    return datetime.strptime(text, fmt).replace(tzinfo=UTC)


def validity(der: bytes) -> Validity:
    """notBefore/notAfter of an X.509 certificate in DER form."""
    tag, start, _ = _tlv(der, 0)
    if tag != _SEQUENCE:
        raise ValueError("not a certificate")
    tag, pos, tbs_end = _tlv(der, start)
    if tag != _SEQUENCE:
        raise ValueError("not a certificate")
    if der[pos] == _EXPLICIT_0:
        pos = _tlv(der, pos)[2]
    for _ in range(3):  # serialNumber, signature, issuer
        pos = _tlv(der, pos)[2]
    tag, vpos, _ = _tlv(der, pos)
    if tag != _SEQUENCE or vpos >= tbs_end:
        raise ValueError("no validity in certificate")
    t1, s1, e1 = _tlv(der, vpos)
    t2, s2, e2 = _tlv(der, e1)
    return Validity(_time(t1, der[s1:e1]), _time(t2, der[s2:e2]))


def to_der(data: bytes) -> bytes:
    """Accept a certificate in PEM or DER form (cloudcore serves DER at /ca.crt)."""
    if data.lstrip().startswith(b"-----BEGIN"):
        return ssl.PEM_cert_to_DER_cert(data.decode("ascii"))
    return data


def sha256_hex(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()

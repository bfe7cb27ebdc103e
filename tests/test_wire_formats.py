"""The small parsers: certificates, tokens, ELF headers, names."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from agent.x509 import sha256_hex, to_der, validity
from kedge.elf import elf_machine
from kedge.names import is_dns1123_subdomain, split_hostport, suggest_dns1123
from kedge.token import parse_token
from tests.kubeedge_sim.pki import CloudcorePKI


def test_validity_matches_what_the_certificate_says() -> None:
    start = datetime(2031, 5, 17, 8, 30, tzinfo=UTC)
    pki = CloudcorePKI.create(["127.0.0.1"], not_before=start)
    der = pki.server_cert.public_bytes(serialization.Encoding.DER)
    v = validity(der)
    assert v.not_before == start
    assert v.not_after == pki.server_cert.not_valid_after_utc  # GeneralizedTime past 2049


def test_pem_and_der_give_the_same_hash() -> None:
    pki = CloudcorePKI.create(["127.0.0.1"])
    pem = pki.ca_cert.public_bytes(serialization.Encoding.PEM)
    assert to_der(pem) == pki.ca_der
    assert sha256_hex(to_der(pki.ca_der)) == pki.token().split(".")[0]


@pytest.mark.parametrize(
    "junk", [b"", b"\x30", b"\x30\x82\xff\xff", b"\x04\x00", b"not a certificate"]
)
def test_validity_rejects_junk(junk: bytes) -> None:
    with pytest.raises(ValueError, match=r"DER|certificate"):
        validity(junk)


def test_token_expiry_is_decoded_without_the_key() -> None:
    pki = CloudcorePKI.create(["127.0.0.1"])
    now = datetime(2030, 1, 1, tzinfo=UTC)
    token = parse_token(pki.token(now=now, expires_in=timedelta(hours=24)))
    assert token.expires_at == now + timedelta(hours=24)
    assert len(token.ca_hash) == 64


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("a.b.c", "3 dot-separated parts"),
        ("XYZ.b.c.d", "the first part is not a SHA-256 hex digest"),
        ("0" * 64 + ".e30.!!!.sig", "the JWT payload is not base64url JSON"),
    ],
)
def test_malformed_tokens(token: str, reason: str) -> None:
    with pytest.raises(ValueError, match="token credentials are in the wrong format") as err:
        parse_token(token)
    assert reason in str(err.value)


def test_elf_machine_of_a_real_binary_and_a_script(tmp_path: Path) -> None:
    assert elf_machine(Path(shutil.which("true") or "/bin/true")) == 0x3E  # this machine is x86-64
    script = tmp_path / "s"
    script.write_text("#!/bin/sh\n")
    assert elf_machine(script) is None


@pytest.mark.parametrize(
    ("name", "valid"),
    [("node1", True), ("edge.node-1", True), ("a" * 253, True), ("a" * 254, False), ("Node1", False),
     ("-node", False), ("node_1", False), ("", False), ("node..1", False)],
)  # fmt: skip
def test_dns1123(name: str, valid: bool) -> None:
    assert is_dns1123_subdomain(name) is valid


@pytest.mark.parametrize("name", ["RK3000_Board1", "--x--", "Ünïcode host", "a..b", "___"])
def test_suggestions_are_always_valid(name: str) -> None:
    assert is_dns1123_subdomain(suggest_dns1123(name))


def test_split_hostport_handles_ipv6() -> None:
    assert split_hostport("[fd00::1]:10000") == ("fd00::1", 10000)
    assert split_hostport("cloud.example:10000") == ("cloud.example", 10000)

"""A pinned cloud API (a first-boot seed's ca_sha256): the certificate's SHA-256 is the
trust, checked on a real TLS connection; anything else is refused, naming both digests."""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kedge.cloud_client import ApiClient, ClientError
from tests.harness.procs import free_port


def self_signed(tmp: Path) -> tuple[Path, Path, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kedge-cloud-api")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
            .not_valid_after(now + timedelta(days=1)).sign(key, hashes.SHA256()))  # fmt: skip
    (tmp / "api.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp / "api.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))  # fmt: skip
    return (
        tmp / "api.crt",
        tmp / "api.key",
        hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest(),
    )


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    cert, key, digest = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    app = web.Application()

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    yield f"https://127.0.0.1:{port}", digest
    await runner.cleanup()


async def test_the_pinned_certificate_is_trusted_and_no_other(api: tuple[str, str]) -> None:
    url, digest = api
    async with ApiClient(url, ca_sha256=digest, timeout=5) as client:
        assert await client.call("GET", "/healthz") == (200, {"ok": True})
    wrong = "00" * 32
    async with ApiClient(url, ca_sha256=wrong, timeout=5) as client:
        with pytest.raises(ClientError) as caught:
            await client.call("GET", "/healthz")
    assert str(caught.value) == (
        f"the cloud API at {url} is not the one pinned: its certificate's SHA-256 is {digest}, "
        f"the seed pins {wrong}"
    )
    async with ApiClient(url, timeout=5) as client:  # no pin, no CA: the system's trust says no
        with pytest.raises(ClientError, match="cannot reach the cloud API"):
            await client.call("GET", "/healthz")

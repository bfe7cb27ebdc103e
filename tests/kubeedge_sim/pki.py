"""cloudcore's PKI: a CA, a server certificate for the advertise addresses, and join
tokens exactly as cloudcore v1.13 makes them (CA hash + HS256 JWT keyed by the CA key)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HUNDRED_YEARS = timedelta(days=36500)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


@dataclass
class CloudcorePKI:
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate
    server_key: ec.EllipticCurvePrivateKey
    server_cert: x509.Certificate

    @classmethod
    def create(cls, advertise: list[str], *, not_before: datetime | None = None) -> CloudcorePKI:
        """Certificates made 'now' by cloudcore's clock (or at `not_before`), not backdated:
        cloud/pkg/cloudhub/servers/httpserver/certutil.go@v1.13.0 lines 49 and 118,
        `NotBefore: time.Now().UTC()` — a board a few seconds behind fails verification."""
        start = not_before or datetime.now(UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("KubeEdge"))
            .issuer_name(_name("KubeEdge"))
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + HUNDRED_YEARS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True, content_commitment=False, key_encipherment=True,
                    data_encipherment=False, key_agreement=False, key_cert_sign=True,
                    crl_sign=False, encipher_only=False, decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .sign(ca_key, hashes.SHA256())
        )  # fmt: skip
        return cls.with_ca(ca_key, ca_cert, advertise, start)

    @classmethod
    def from_secret(cls, ca_der: bytes, ca_key_der: bytes, advertise: list[str]) -> CloudcorePKI:
        """cloudcore restarted: the CA from casecret, a fresh server certificate."""
        ca_key = serialization.load_der_private_key(ca_key_der, password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        start = datetime.now(UTC)
        return cls.with_ca(ca_key, x509.load_der_x509_certificate(ca_der), advertise, start)

    @classmethod
    def with_ca(cls, ca_key: ec.EllipticCurvePrivateKey, ca_cert: x509.Certificate,
                advertise: list[str], start: datetime) -> CloudcorePKI:  # fmt: skip
        # As cloudhub's SignCerts: CN and O "KubeEdge", server auth, the advertise
        # addresses as SANs, made by cloudcore's clock, valid for 100 years.
        server_key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for a in advertise:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(a)))
            except ValueError:
                sans.append(x509.DNSName(a))
        server_cert = (
            x509.CertificateBuilder()
            .subject_name(_name("KubeEdge", "KubeEdge"))
            .issuer_name(ca_cert.subject)
            .public_key(server_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + HUNDRED_YEARS)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        return cls(ca_key, ca_cert, server_key, server_cert)

    @classmethod
    def from_secrets(
        cls, ca_der: bytes, ca_key_der: bytes, cert_der: bytes, key_der: bytes
    ) -> CloudcorePKI:
        """cloudcore restarted: the CA from casecret, the server certificate from
        cloudcoresecret, whatever addresses it was made for."""
        ca_key = serialization.load_der_private_key(ca_key_der, password=None)
        key = serialization.load_der_private_key(key_der, password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cls(ca_key, x509.load_der_x509_certificate(ca_der), key,
                   x509.load_der_x509_certificate(cert_der))  # fmt: skip

    @property
    def server_cert_der(self) -> bytes:
        return self.server_cert.public_bytes(serialization.Encoding.DER)

    @property
    def server_key_der(self) -> bytes:
        return self.server_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    @property
    def ca_der(self) -> bytes:
        return self.ca_cert.public_bytes(serialization.Encoding.DER)

    @property
    def ca_key_der(self) -> bytes:
        return self.ca_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    def token(
        self, *, expires_in: timedelta = timedelta(hours=24), now: datetime | None = None
    ) -> str:
        """`<sha256(CA DER)>.<JWT>`; the JWT's only claim is exp, HMAC key = CA key bytes."""
        exp = int(((now or datetime.now(UTC)) + expires_in).timestamp())
        header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
        payload = _b64url(json.dumps({"exp": exp}, separators=(",", ":")).encode())
        signing_input = f"{header}.{payload}".encode()
        sig = _b64url(hmac.new(self.ca_key_der, signing_input, hashlib.sha256).digest())
        return f"{hashlib.sha256(self.ca_der).hexdigest()}.{header}.{payload}.{sig}"

    def write_server_pem(self, cert_path: str, key_path: str) -> None:
        with open(cert_path, "wb") as fh:
            fh.write(self.server_cert.public_bytes(serialization.Encoding.PEM))
        with open(key_path, "wb") as fh:
            fh.write(
                self.server_key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )

    def check_bearer(self, jwt: str, *, now: datetime | None = None) -> bool:
        """cloudcore's token check: HS256 signature with the CA key, then exp."""
        try:
            header, payload, sig = jwt.split(".")
            expected = _b64url(
                hmac.new(self.ca_key_der, f"{header}.{payload}".encode(), hashlib.sha256).digest()
            )
            if not hmac.compare_digest(expected, sig):
                return False
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return False
        return float(claims.get("exp", 0)) > (now or datetime.now(UTC)).timestamp()

    def sign_csr(self, csr_der: bytes, node_name: str) -> bytes:
        """An edge certificate for the CSR, valid 365 days (edgeCertSigningDuration)."""
        csr = x509.load_der_x509_csr(csr_der)
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(node_name, "KubeEdge"))
            .issuer_name(self.ca_cert.subject)
            .public_key(csr.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now)
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self.ca_key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.DER)

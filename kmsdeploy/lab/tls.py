"""A throw-away certificate authority for the lab's HTTPS (5986-style) WinRM listeners.

:class:`LabCA` generates (with ``cryptography``) a self-signed CA and, per simulated
host, a server certificate whose subjectAltName lists the host's name and loopback
address, so clients can verify the lab with ``ansible_winrm_ca_trust_path`` exactly as
they verify a real host against the domain CA. Keys are EC P-256 (fast to generate;
ECDSA-SHA256 signatures, which requests_ntlm's channel binding hashes with SHA-256).
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class ServerCert:
    """PEM paths of one host's certificate and key, and the DER certificate."""

    cert_path: str
    key_path: str
    der: bytes

    def channel_binding(self) -> bytes:
        """``tls-server-end-point`` application data (RFC 5929) for NTLMv2 CBT."""
        cert = x509.load_der_x509_certificate(self.der)
        algo = cert.signature_hash_algorithm
        if algo is None or algo.name in ("md5", "sha1"):
            algo = hashes.SHA256()
        digest = hashes.Hash(algo)
        digest.update(self.der)
        return b"tls-server-end-point:" + digest.finalize()

    def server_context(self) -> ssl.SSLContext:
        """An SSLContext serving this certificate (TLS 1.2+)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_path, self.key_path)
        return ctx


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


class LabCA:
    """A CA kept in ``directory`` (``ca.pem`` public, ``ca.key`` 0600); created if missing."""

    def __init__(self, directory: str | os.PathLike, common_name: str = "kmsdeploy lab CA"):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca_path = str(self.directory / "ca.pem")
        key_path = self.directory / "ca.key"
        if os.path.exists(self.ca_path) and key_path.exists():
            self._key = serialization.load_pem_private_key(key_path.read_bytes(), None)
            self._cert = x509.load_pem_x509_certificate(Path(self.ca_path).read_bytes())
            return
        now = dt.datetime.now(dt.timezone.utc)
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        _write_private(key_path, self._key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        Path(self.ca_path).write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, addresses: list[str], dns_names: list[str] = ()) -> ServerCert:
        """Issue a server certificate for ``name`` with SANs for every address and DNS name."""
        now = dt.datetime.now(dt.timezone.utc)
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = []
        for dns in dict.fromkeys([name, *dns_names]):
            try:
                ipaddress.ip_address(dns)
            except ValueError:
                sans.append(x509.DNSName(dns))
        for addr in dict.fromkeys(addresses):
            sans.append(x509.IPAddress(ipaddress.ip_address(addr)))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        safe = "".join(c if c.isalnum() or c in "-." else "_" for c in name)
        cert_path = self.directory / f"{safe}.pem"
        key_path = self.directory / f"{safe}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_private(key_path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return ServerCert(str(cert_path), str(key_path), cert.public_bytes(serialization.Encoding.DER))

"""Throwaway certificate authorities for TLS tests: server and client certificates as PEM files.

Usage::

    front_proxy_ca = TestCa("front-proxy-ca")
    client = front_proxy_ca.issue(tmp_path, "front-proxy-client", client=True)
    requests.get(url, cert=(client.cert_file, client.key_file), verify=False)
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True, slots=True)
class Issued:
    """A certificate and its key on disk."""

    cert_file: Path
    key_file: Path

    @property
    def pair(self) -> tuple[str, str]:
        """``(cert, key)`` as ``requests`` takes a client certificate."""
        return (str(self.cert_file), str(self.key_file))


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


class TestCa:
    """A self-signed CA, valid for an hour, that issues leaf certificates."""

    __test__ = False  # not a pytest test class

    def __init__(self, common_name: str) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(_name(common_name))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(ca=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )

    @property
    def pem(self) -> str:
        """The CA certificate, PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def write(self, directory: Path) -> Path:
        """The CA certificate as a PEM file in ``directory``."""
        path = directory / f"ca-{secrets.token_hex(4)}.crt"
        path.write_text(self.pem)
        return path

    def issue(self, directory: Path, common_name: str, *, client: bool, hosts: Sequence[str] = ()) -> Issued:
        """A client or server leaf for ``common_name`` (``hosts`` as SANs) written into ``directory``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(ca=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
        )
        if hosts:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        stem = directory / f"{common_name.replace(':', '_')}-{secrets.token_hex(4)}"
        issued = Issued(cert_file=stem.with_suffix(".crt"), key_file=stem.with_suffix(".key"))
        issued.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        issued.key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        issued.key_file.chmod(0o600)
        return issued


def publish_bundle(path: Path, *cas: TestCa) -> None:
    """Replace the CA bundle at ``path`` with ``cas`` in one rename, as a kubelet updates a mounted volume."""
    staged = path.with_name(f".{path.name}.staged")
    staged.write_text("".join(ca.pem for ca in cas))
    os.replace(staged, path)

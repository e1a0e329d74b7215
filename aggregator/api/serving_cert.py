"""The metrics API's serving certificate when none is configured: self-signed, made at start-up.

The API server then cannot verify it, which is why the overlay's APIService sets
``insecureSkipTLSVerify: true``; with a certificate from a CA the API server is given (``caBundle``), set
``KPULSE_AGGREGATOR_METRICS_API_CERT_FILE``/``..._KEY_FILE`` instead.

Usage::

    paths = write_self_signed(Path(tmpdir), default_hosts(), datetime.now(UTC))
    uvicorn.Config(app, ssl_certfile=paths.cert_file, ssl_keyfile=paths.key_file, ...)
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=365)
"""metrics-server's self-signed certificate lasts a year too; it is remade at every start."""
BACKDATE = datetime.timedelta(minutes=5)
"""Valid from a little before now, for peers whose clocks are slightly behind."""


@dataclass(frozen=True, slots=True)
class CertKeyFiles:
    """A PEM certificate and its PEM private key on disk."""

    cert_file: Path
    key_file: Path


def default_hosts() -> list[str]:
    """Names a self-signed certificate is made for: localhost, this host's name, the loopback addresses."""
    return ["localhost", socket.gethostname(), "127.0.0.1", "::1"]


def self_signed_pem(hosts: Sequence[str], now: datetime.datetime) -> tuple[bytes, bytes]:
    """A self-signed serving certificate for ``hosts`` (DNS names or IP addresses) and its key, both PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, f"kpulse-aggregator-metrics-api@{int(now.timestamp())}")]
    )
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):  # keeps order, drops repeats
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def write_self_signed(directory: Path, hosts: Sequence[str], now: datetime.datetime) -> CertKeyFiles:
    """Make a self-signed certificate for ``hosts``; write it and its key (mode 0600) into ``directory``."""
    cert_pem, key_pem = self_signed_pem(hosts, now)
    files = CertKeyFiles(cert_file=directory / "tls.crt", key_file=directory / "tls.key")
    files.cert_file.write_bytes(cert_pem)
    # Created with owner-only permissions, never readable by others even for a moment.
    descriptor = os.open(files.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as key_out:
        key_out.write(key_pem)
    return files

"""The self-signed serving certificate: what it is made for, and that a real TLS handshake accepts it."""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import stat
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from aggregator.api.serving_cert import default_hosts, write_self_signed

NOW = datetime.datetime(2024, 5, 1, 10, 0, tzinfo=datetime.UTC)


def test_it_names_the_hosts_is_a_year_long_server_certificate_and_its_key_matches(tmp_path: Path) -> None:
    files = write_self_signed(tmp_path, ["localhost", "aggregator.kpulse.svc", "127.0.0.1", "::1"], NOW)

    cert = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
    key = serialization.load_pem_private_key(files.key_file.read_bytes(), password=None)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "aggregator.kpulse.svc"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert cert.issuer == cert.subject
    assert cert.not_valid_before_utc < NOW < cert.not_valid_after_utc
    assert cert.not_valid_after_utc - NOW == datetime.timedelta(days=365)
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.public_key() == key.public_key()
    assert stat.S_IMODE(files.key_file.stat().st_mode) == 0o600


def test_default_hosts_cover_loopback_and_this_hosts_name() -> None:
    assert {"localhost", "127.0.0.1", "::1", socket.gethostname()} <= set(default_hosts())


def test_a_client_that_pins_it_completes_a_tls_handshake_for_localhost(tmp_path: Path) -> None:
    files = write_self_signed(tmp_path, default_hosts(), datetime.datetime.now(datetime.UTC))
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(files.cert_file, files.key_file)
    client_context = ssl.create_default_context(cafile=str(files.cert_file))

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def accept_one() -> None:
            connection, _ = listener.accept()
            with server_context.wrap_socket(connection, server_side=True) as tls:
                tls.sendall(b"ok")

        thread = threading.Thread(target=accept_one, daemon=True)
        thread.start()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
            client_context.wrap_socket(raw, server_hostname="localhost") as tls,
        ):
            assert tls.recv(2) == b"ok"
        thread.join(timeout=10)

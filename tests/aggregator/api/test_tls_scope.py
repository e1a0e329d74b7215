"""The ASGI TLS extension under real uvicorn and real TLS: what the app sees of the client's certificate.

Expected values come from asgiref's specs/tls.rst: the client certificate as PEM first in
``client_cert_chain``, its subject in RFC 4514, the TLS version as its wire number (0x0303, 0x0304), and no
``tls`` key at all on a plain HTTP connection.
"""

from __future__ import annotations

import datetime
import http.client
import json
import socket
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn
from cryptography import x509
from starlette.types import Receive, Scope, Send

from aggregator.api.serving_cert import CertKeyFiles, write_self_signed
from aggregator.api.tls_scope import TlsScopeProtocol
from tests.aggregator.servers import serve_config
from tests.helpers import wait_until
from tests.pki import Issued, TestCa


async def echo_tls(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the scope's extensions as JSON."""
    if scope["type"] != "http":
        return
    body = json.dumps(scope.get("extensions") or {}).encode()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertKeyFiles, Path, Issued]:
    directory = tmp_path_factory.mktemp("tls-scope")
    serving = write_self_signed(directory, ["127.0.0.1"], datetime.datetime.now(datetime.UTC))
    client_ca = TestCa("client CA")
    return serving, client_ca.write(directory), client_ca.issue(directory, "front-proxy-client", client=True)


def _tls_config(pki: tuple[CertKeyFiles, Path, Issued]) -> uvicorn.Config:
    serving, client_ca_file, _ = pki
    return uvicorn.Config(
        echo_tls,
        log_config=None,
        lifespan="off",
        ssl_certfile=serving.cert_file,
        ssl_keyfile=serving.key_file,
        ssl_cert_reqs=ssl.CERT_OPTIONAL,
        ssl_ca_certs=client_ca_file,
        http=TlsScopeProtocol,
    )


def test_the_app_sees_the_client_certificate_its_name_and_the_tls_version(
    pki: tuple[CertKeyFiles, Path, Issued],
) -> None:
    serving, _, client = pki
    with serve_config(_tls_config(pki)) as (port, _):
        seen = requests.get(
            f"https://127.0.0.1:{port}/", cert=client.pair, verify=str(serving.cert_file), timeout=10
        ).json()["tls"]

    (presented,) = seen["client_cert_chain"]
    assert x509.load_pem_x509_certificate(presented.encode()) == x509.load_pem_x509_certificate(
        client.cert_file.read_bytes()
    )
    assert seen["client_cert_name"] == "CN=front-proxy-client"
    assert seen["client_cert_error"] is None
    assert seen["tls_version"] == 0x0304
    assert seen["server_cert"] is None
    assert seen["cipher_suite"] is None


def test_without_a_client_certificate_the_chain_is_empty(pki: tuple[CertKeyFiles, Path, Issued]) -> None:
    serving, _, _ = pki
    with serve_config(_tls_config(pki)) as (port, _):
        seen = requests.get(f"https://127.0.0.1:{port}/", verify=str(serving.cert_file), timeout=10).json()

    assert seen["tls"]["client_cert_chain"] == []
    assert seen["tls"]["client_cert_name"] is None


def test_tls_1_2_is_reported_as_0x0303(pki: tuple[CertKeyFiles, Path, Issued]) -> None:
    serving, _, client = pki
    context = ssl.create_default_context(cafile=str(serving.cert_file))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(client.cert_file, client.key_file)
    with serve_config(_tls_config(pki)) as (port, _):
        connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        connection.request("GET", "/")
        seen: dict[str, Any] = json.loads(connection.getresponse().read())
        connection.close()

    assert seen["tls"]["tls_version"] == 0x0303
    assert seen["tls"]["client_cert_name"] == "CN=front-proxy-client"


def test_a_plain_http_connection_has_no_tls_extension() -> None:
    config = uvicorn.Config(echo_tls, log_config=None, lifespan="off", http=TlsScopeProtocol)
    with serve_config(config) as (port, _):
        seen = requests.get(f"http://127.0.0.1:{port}/", timeout=10).json()

    assert "tls" not in seen


def test_shutdown_does_not_wait_for_an_idle_client_that_never_closes(
    pki: tuple[CertKeyFiles, Path, Issued],
) -> None:
    serving, _, _ = pki
    context = ssl.create_default_context(cafile=str(serving.cert_file))
    with serve_config(_tls_config(pki)) as (port, server):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        client = context.wrap_socket(raw, server_hostname="127.0.0.1")
        client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert client.recv(65536).startswith(b"HTTP/1.1 200")
        # The connection now idles, kept alive, and this client reads nothing more: a graceful TLS close
        # would wait up to 30 s for its close_notify.
        started = time.monotonic()
        server.should_exit = True
        wait_until(lambda: not server.server_state.connections, 10, "the idle TLS connection is still open")
        elapsed = time.monotonic() - started
        client.close()

    assert elapsed < 10

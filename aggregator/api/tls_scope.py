"""The ASGI TLS extension for uvicorn: ``scope["extensions"]["tls"]`` with the client's certificate.

uvicorn does not hand the peer certificate to the app. This HTTP protocol (uvicorn's h11 one) reads it from
the connection once the handshake is done and adds the extension as asgiref's ``specs/tls.rst`` defines it:
``client_cert_chain`` (PEM; Python's ssl module exposes the client's own certificate only, not the
intermediates it sent), ``client_cert_name`` (RFC 4514), ``client_cert_error`` (always ``None``: with
``CERT_OPTIONAL`` a certificate that fails verification fails the handshake), ``tls_version``;
``server_cert`` and ``cipher_suite`` are ``None`` (not exposed by the ssl module).

Usage::

    uvicorn.Config(app, ssl_certfile=cert, ssl_keyfile=key, ssl_cert_reqs=ssl.CERT_OPTIONAL,
                   ssl_ca_certs=client_ca_file, http=TlsScopeProtocol)
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from cryptography import x509
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

TLS_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
"""The ssl module's protocol names as the wire numbers the extension reports."""


def tls_extension(ssl_object: ssl.SSLObject) -> dict[str, Any]:
    """The ``tls`` extension of one connection, from its (handshaken) ``ssl_object``."""
    der = ssl_object.getpeercert(binary_form=True)
    chain: list[str] = []
    name: str | None = None
    if der:
        chain = [ssl.DER_cert_to_PEM_cert(der)]
        name = x509.load_der_x509_certificate(der).subject.rfc4514_string()
    return {
        "server_cert": None,
        "client_cert_chain": chain,
        "client_cert_name": name,
        "client_cert_error": None,
        "tls_version": TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": None,
    }


def with_tls_extension(app: ASGIApp, tls: dict[str, Any]) -> ASGIApp:
    """``app`` seeing ``tls`` as ``scope["extensions"]["tls"]`` in every HTTP and WebSocket scope."""

    async def app_with_tls(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in {"http", "websocket"}:
            scope["extensions"] = {**(scope.get("extensions") or {}), "tls": tls}
        await app(scope, receive, send)

    return app_with_tls


class TlsScopeProtocol(H11Protocol):
    """uvicorn's h11 protocol, adding the TLS extension to the scope of each request on a TLS connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the connection; on TLS, wrap the app so that it sees this connection's certificate."""
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if isinstance(ssl_object, ssl.SSLObject):
            # asyncio calls this only after the handshake, so the peer certificate is final here; the
            # wrapper is per connection because uvicorn builds one protocol object per connection.
            self.app = with_tls_extension(self.app, tls_extension(ssl_object))

    def shutdown(self) -> None:
        """Close for shutdown: an idle keep-alive TLS connection at once, a busy one after its response."""
        idle = self.cycle is None or self.cycle.response_complete
        super().shutdown()
        if idle and self.scheme == "https":
            # A TLS close waits for the peer's close_notify, up to 30 s; a pooled client connection that
            # nobody reads never sends one, and shutdown would wait that long for it.
            self.transport.abort()

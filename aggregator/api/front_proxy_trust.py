"""The metrics API's front-proxy trust in force, read again from its source while the listener serves.

The cluster rotates its front-proxy CA (and may change the allowed names or header names) in the ConfigMap
``kube-system/extension-apiserver-authentication`` or the configured CA file. :class:`LiveTrust` holds the
last trust read successfully and hands uvicorn one listening ``SSLContext`` whose SNI callback, which OpenSSL
calls in every handshake (with or without a server name) before the client's certificate is verified,
moves the connection onto a context that verifies against the CA set in force. A context's trust store can
only grow, so every new CA set gets a context of its own. Since a resumed TLS session skips verification,
none from before a CA change is resumed; connections still open from before are the caller's to close
(``on_ca_change``). A read that fails leaves the last good trust in force: nothing is ever trusted that the
source did not say, and the request path never sees half a read.

Usage::

    live = LiveTrust(source, source.load(), serving)           # a failed first read stops the start-up
    config = uvicorn.Config(app, ssl_context_factory=live.ssl_context_factory, ...)
    trust = live.current()                                      # per request: names and header names
    await keep_current(live, period_seconds=60, metrics=metrics, on_ca_change=close_old_connections)
"""

from __future__ import annotations

import asyncio
import enum
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from aggregator.api.front_proxy import RequestHeaderTrust
from aggregator.api.serving_cert import CertKeyFiles
from aggregator.errors import AggregatorError, FrontProxyConfigError
from aggregator.metrics import AggregatorMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TrustSource:
    """Where the front-proxy trust comes from: ``description`` names it, ``load`` reads it (blocking)."""

    description: str
    load: Callable[[], RequestHeaderTrust]
    """Raises :class:`AggregatorError`: the file or ConfigMap cannot be read, or is not a usable trust."""


class TrustChange(enum.Enum):
    """What a reload changed."""

    NONE = "unchanged"
    NAMES = "names"
    """Allowed names or header names; the CA set is the same."""
    CA = "ca"
    """The CA set (and perhaps the names): new handshakes verify against the new one."""


def verifying_context(serving: CertKeyFiles, ca_pem: str) -> ssl.SSLContext:
    """A server context for ``serving`` verifying a client certificate (when sent) against ``ca_pem``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(serving.cert_file, serving.key_file)
    # Optional, not required: the kubelet's probes send no certificate. One that is sent must chain to the
    # CA set or the handshake fails; routes then require it (MetricsApiGuard).
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(cadata=ca_pem)
    # No session tickets: a resumed session is not verified again, so a client once verified against a CA
    # since removed could come back on its old session (TLS 1.2 session IDs: LiveTrust._select_context).
    context.options |= ssl.OP_NO_TICKET
    context.num_tickets = 0
    return context


def ca_set(ca_pem: str) -> frozenset[bytes]:
    """The certificates of a PEM bundle, as DER: equal for the same CAs however the bundle is laid out."""
    return frozenset(
        cert.public_bytes(Encoding.DER) for cert in x509.load_pem_x509_certificates(ca_pem.encode())
    )


def describe(trust: RequestHeaderTrust) -> str:
    """The trust in one line: CA subjects, allowed names, username headers."""
    subjects = [
        cert.subject.rfc4514_string()
        for cert in x509.load_pem_x509_certificates(trust.client_ca_pem.encode())
    ]
    return (
        f"CA {subjects}, allowed names {list(trust.allowed_names) or 'any'}, "
        f"username headers {list(trust.username_headers)}"
    )


@dataclass(frozen=True, slots=True)
class _InForce:
    trust: RequestHeaderTrust
    context: ssl.SSLContext | None
    """``None`` until uvicorn asks for the listening context or a new CA set arrives."""
    ca_since_seconds: int = 0
    """Unix time, in whole seconds, when this CA set was put in force (0: the first one)."""


class LiveTrust:
    """The front-proxy trust in force and the TLS context verifying against its CA set; see the module."""

    def __init__(self, source: TrustSource, trust: RequestHeaderTrust, serving: CertKeyFiles) -> None:
        self.source = source
        self._serving = serving
        # One attribute, replaced whole: the loop thread reads it while a reload runs in a worker thread.
        self._in_force = _InForce(trust, None)

    def current(self) -> RequestHeaderTrust:
        """The trust in force: what requests are checked against (CA set, names, header names)."""
        return self._in_force.trust

    def ssl_context_factory(
        self, config: uvicorn.Config, default: Callable[[], ssl.SSLContext]
    ) -> ssl.SSLContext:
        """uvicorn's ``ssl_context_factory``: the listening context (``default`` and its files are unused)."""
        in_force = self._in_force
        context = in_force.context or verifying_context(self._serving, in_force.trust.client_ca_pem)
        self._in_force = replace(in_force, context=context)
        context.sni_callback = self._select_context
        return context

    def _select_context(
        self, ssl_object: ssl.SSLObject, server_name: str | None, listening: ssl.SSLContext
    ) -> int | None:
        in_force = self._in_force
        # The listening context's cache resumes TLS 1.2 sessions by ID, without verifying the certificate
        # again: one from before this CA set was verified against another. Failing the handshake makes
        # the client start afresh. (Session times are whole seconds: the second of the change is refused.)
        if ssl_object.session_reused and _session_seconds(ssl_object) <= in_force.ca_since_seconds:
            return ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        if in_force.context is not None and ssl_object.context is not in_force.context:
            ssl_object.context = in_force.context
        return None

    def reload(self) -> TrustChange:
        """Read the source again and put what it says in force; raises (the last good trust stays) if not."""
        trust = self.source.load()
        in_force = self._in_force
        if ca_set(trust.client_ca_pem) == ca_set(in_force.trust.client_ca_pem):
            # The same CAs laid out differently (order, blank lines) are no change.
            if replace(trust, client_ca_pem=in_force.trust.client_ca_pem) == in_force.trust:
                return TrustChange.NONE
            self._in_force = replace(in_force, trust=trust)
            return TrustChange.NAMES
        try:
            context = verifying_context(self._serving, trust.client_ca_pem)
        except OSError as exc:  # ssl.SSLError included
            raise FrontProxyConfigError(
                f"cannot verify client certificates against the requestheader client CA from "
                f"{self.source.description}: {exc}"
            ) from exc
        self._in_force = _InForce(trust, context, ca_since_seconds=int(time.time()))
        return TrustChange.CA


def _session_seconds(ssl_object: ssl.SSLObject) -> int:
    session = ssl_object.session
    # No session to date means nothing to trust: treated as older than any CA set.
    return session.time if session is not None else 0


def reload_once(live: LiveTrust, metrics: AggregatorMetrics, *, period_seconds: float) -> TrustChange | None:
    """Reload ``live``; log a change or the failure in one line and count it. ``None``: it failed."""
    reloads = metrics.metrics_api_trust_reloads
    try:
        change = live.reload()
    except AggregatorError as exc:
        reloads.labels(outcome="failed").inc()
        log.warning(
            "cannot reload the front-proxy trust from %s: %s; the last good trust stays in force, next try "
            "in %g s",
            live.source.description,
            exc,
            period_seconds,
        )
        return None
    except Exception:  # a bug here must neither stop the reloads nor the listener, nor loosen the trust
        reloads.labels(outcome="failed").inc()
        log.exception(
            "cannot reload the front-proxy trust from %s; the last good trust stays in force, next try "
            "in %g s",
            live.source.description,
            period_seconds,
        )
        return None
    if change is TrustChange.NONE:
        reloads.labels(outcome="unchanged").inc()
        return change
    reloads.labels(outcome="changed").inc()
    log.info(
        "front-proxy trust from %s changed (%s): %s",
        live.source.description,
        "new CA set, new TLS handshakes verify against it"
        if change is TrustChange.CA
        else "names or headers",
        describe(live.current()),
    )
    return change


async def keep_current(
    live: LiveTrust,
    *,
    period_seconds: float,
    metrics: AggregatorMetrics,
    on_ca_change: Callable[[], None],
) -> None:
    """Reload ``live`` every ``period_seconds`` until cancelled; ``on_ca_change`` runs after a new CA set."""
    while True:
        await asyncio.sleep(period_seconds)  # a timer, not synchronisation
        # The ConfigMap read blocks for up to the API request timeout: off the loop that serves.
        change = await asyncio.to_thread(reload_once, live, metrics, period_seconds=period_seconds)
        if change is TrustChange.CA:
            try:
                on_ca_change()
            except Exception:  # the reloads must go on; the new CA set is in force for new handshakes
                log.exception("the action after a new front-proxy CA set failed; new handshakes use it still")

"""Request dependencies as ``Annotated`` aliases: the app state, its settings and sink, and ingest auth."""

from __future__ import annotations

import hmac
import ipaddress
import logging
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from aggregator.api.state import AggregatorState
from aggregator.metrics import AggregatorMetrics
from aggregator.settings import AggregatorSettings
from aggregator.sinks import Sink

log = logging.getLogger(__name__)

_WWW_AUTHENTICATE = 'Bearer realm="kpulse-ingest"'


async def get_state(request: Request) -> AggregatorState:
    """The state ``create_app`` stored on the app."""
    state: AggregatorState = request.app.state.aggregator
    return state


StateDep = Annotated[AggregatorState, Depends(get_state)]


async def get_settings_dep(state: StateDep) -> AggregatorSettings:
    """The settings the app was created with."""
    return state.settings


SettingsDep = Annotated[AggregatorSettings, Depends(get_settings_dep)]


async def get_metrics(state: StateDep) -> AggregatorMetrics:
    """The app's own Prometheus metrics."""
    return state.metrics


MetricsDep = Annotated[AggregatorMetrics, Depends(get_metrics)]


async def get_sink(state: StateDep) -> Sink:
    """The sink, once the lifespan has started it (503 before)."""
    if state.sink is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the aggregator is starting")
    return state.sink


SinkDep = Annotated[Sink, Depends(get_sink)]


def configured_token(settings: AggregatorSettings) -> str | None:
    """The ingest token, or ``None`` when unset or blank (``KPULSE_INGEST_TOKEN=`` in an env file)."""
    if settings.ingest_token is None:
        return None
    token = settings.ingest_token.get_secret_value().strip()
    return token or None


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` (a client address) is 127.0.0.0/8 or ::1, IPv4-mapped forms included."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


async def require_ingest_auth(request: Request, settings: SettingsDep, metrics: MetricsDep) -> None:
    """Let the request through when it carries the ingest token, or when none is set and it is local.

    Without a token anybody who can reach the port could write metrics, so only loopback clients are
    accepted then. Behind a proxy the client is the proxy: configure a token there.
    """
    token = configured_token(settings)
    client = request.client.host if request.client else None
    if token is None:
        if is_loopback(client):
            return
        metrics.batches_received.labels(outcome="forbidden").inc()
        log.warning(
            "refused ingest from %s: no ingest token configured, only loopback clients allowed", client
        )
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "no ingest token configured, so only loopback clients may ingest; "
            "set KPULSE_INGEST_TOKEN on the aggregator and its collectors to accept remote collectors",
        )
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not credentials:
        metrics.batches_received.labels(outcome="unauthorized").inc()
        log.warning("refused ingest from %s: no bearer token", client)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token: send 'Authorization: Bearer <KPULSE_INGEST_TOKEN>'",
            headers={"WWW-Authenticate": _WWW_AUTHENTICATE},
        )
    # Constant-time comparison so response timing does not reveal how much of a guess was right.
    if not hmac.compare_digest(credentials.encode(), token.encode()):
        metrics.batches_received.labels(outcome="unauthorized").inc()
        log.warning("refused ingest from %s: wrong bearer token", client)
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid bearer token: it does not match the aggregator's KPULSE_INGEST_TOKEN",
            headers={"WWW-Authenticate": f'{_WWW_AUTHENTICATE}, error="invalid_token"'},
        )


IngestAuthDep = Annotated[None, Depends(require_ingest_auth)]

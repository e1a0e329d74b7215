"""The metrics API's gate: front-proxy authentication, then the user's authorization, before any route.

Every request except the probes (``/healthz``, ``/livez``, ``/readyz``) must come from the API server's
front proxy and name a user (401 otherwise); that user must be allowed what the request asks (403), which
is asked of the API server unless authorization was explicitly switched off; when it cannot be asked, the
request fails closed (503). Refusals are Kubernetes ``Status`` objects, worded as the API server words them,
and counted in ``kpulse_aggregator_metrics_api_requests_total``.

Usage::

    app.add_middleware(MetricsApiGuard, trust=live.current, authorizer=reviewer, metrics=state.metrics)
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from aggregator.api.authz import (
    Attributes,
    Authorizer,
    NonResourceAttributes,
    ResourceAttributes,
    forbidden_message,
    request_attributes,
)
from aggregator.api.front_proxy import RequestHeaderTrust, Unauthenticated, UserInfo, authenticate
from aggregator.api.schemas_metrics_k8s import Status, StatusDetails
from aggregator.errors import KubernetesApiError
from aggregator.metrics import AggregatorMetrics

log = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
"""Probes answer anyone, as an aggregated API server's do (the kubelet has no client certificate)."""

_REASONS = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    503: "ServiceUnavailable",
}


def status_response(code: int, message: str, details: StatusDetails | None = None) -> JSONResponse:
    """A Kubernetes ``Status`` failure with HTTP status ``code``."""
    status = Status(message=message, reason=_REASONS.get(code, "InternalError"), details=details, code=code)
    return JSONResponse(status.model_dump(by_alias=True, exclude_none=True), status_code=code)


def _qualified(attributes: ResourceAttributes) -> str:
    return f"{attributes.resource}.{attributes.group}" if attributes.group else attributes.resource


def forbidden_response(user: UserInfo, attributes: Attributes, reason: str) -> JSONResponse:
    """403 worded as the API server words it: ``pods.metrics.k8s.io "web-1" is forbidden: User "bob" ...``."""
    text = forbidden_message(user, attributes, reason)
    if isinstance(attributes, NonResourceAttributes):
        return status_response(403, f"forbidden: {text}")
    named = f' "{attributes.name}"' if attributes.name else ""
    details = StatusDetails(name=attributes.name or None, group=attributes.group, kind=attributes.resource)
    return status_response(403, f"{_qualified(attributes)}{named} is forbidden: {text}", details)


class MetricsApiGuard:
    """ASGI middleware: authenticates (front proxy) and authorizes (``authorizer``; ``None``: unsafe, off).

    ``trust`` is called per request for the trust in force, which a reload may have replaced.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        trust: Callable[[], RequestHeaderTrust],
        authorizer: Authorizer | None,
        metrics: AggregatorMetrics,
    ) -> None:
        self.app = app
        self._trust = trust
        self._authorizer = authorizer
        self._requests = metrics.metrics_api_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on when it is authenticated and authorized; answer a ``Status`` otherwise."""
        if scope["type"] == "lifespan" or (scope["type"] == "http" and scope["path"] in OPEN_PATHS):
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            # Nothing here speaks WebSocket; close before anything unauthenticated reaches a route.
            await send({"type": "websocket.close", "code": 1008})
            return
        client = scope["client"][0] if scope.get("client") else None
        tls = (scope.get("extensions") or {}).get("tls") or {}
        user = authenticate(tls.get("client_cert_chain") or (), scope["headers"], self._trust())
        if isinstance(user, Unauthenticated):
            self._requests.labels(outcome="unauthenticated").inc()
            log.warning("refused metrics API request from %s: %s", client, user.reason)
            await status_response(401, f"Unauthorized: {user.reason}")(scope, receive, send)
            return
        attributes = request_attributes(scope["method"], scope["path"], scope.get("query_string", b""))
        if self._authorizer is not None:
            try:
                decision = await self._authorizer.authorize(user, attributes)
            except KubernetesApiError as exc:
                self._requests.labels(outcome="authorization_failed").inc()
                log.error(
                    "cannot authorize user %r for %s %s: %s", user.name, scope["method"], scope["path"], exc
                )
                message = (
                    "authorization unavailable: the Kubernetes API server could not be asked "
                    f"(SubjectAccessReview) whether this user may do this: {exc}"
                )
                await status_response(503, message)(scope, receive, send)
                return
            if not decision.allowed:
                self._requests.labels(outcome="forbidden").inc()
                log.info("forbidden: %s", forbidden_message(user, attributes, decision.reason))
                await forbidden_response(user, attributes, decision.reason)(scope, receive, send)
                return
        if isinstance(attributes, ResourceAttributes) and attributes.verb == "watch":
            # Only get and list are served: a watch must not quietly receive a list instead.
            self._requests.labels(outcome="allowed").inc()
            await status_response(405, "watch is not supported by metrics.k8s.io here")(scope, receive, send)
            return
        self._requests.labels(outcome="allowed").inc()
        await self.app(scope, receive, send)

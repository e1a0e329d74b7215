"""What the metrics-API listener needs before it starts: front-proxy trust, serving certificate, authorizer.

The trust (requestheader CA, allowed names, header names) comes from the settings when
``KPULSE_AGGREGATOR_METRICS_API_REQUESTHEADER_CLIENT_CA_FILE`` is set, otherwise from the ConfigMap
``kube-system/extension-apiserver-authentication``, read through the API server as the pod's service
account. It is read here once (a failure stops the start-up) and again every
``..._REQUESTHEADER_RELOAD_SECONDS`` while serving (aggregator/api/front_proxy_trust.py). The serving
certificate is the configured pair, or a self-signed one written into ``workdir``. Authorization is
SubjectAccessReviews through the same API server unless it was explicitly (and unsafely) switched off.

Usage::

    listener = prepare_metrics_api(settings, workdir)          # FrontProxyConfigError, KubernetesApiError
    app = create_metrics_api_app(state, trust=listener.trust.current, authorizer=listener.authorizer)
    server = uvicorn.Server(metrics_api_config(app, listener, access_log=False))
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import requests
import uvicorn
from fastapi import FastAPI

from aggregator.api.authz import Authorizer, SubjectAccessReviewer
from aggregator.api.front_proxy import (
    CONFIGMAP_NAME,
    CONFIGMAP_NAMESPACE,
    CONFIGMAP_PATH,
    RequestHeaderTrust,
    check_trust,
    parse_authentication_configmap,
)
from aggregator.api.front_proxy_trust import LiveTrust, TrustSource
from aggregator.api.kube_client import KubernetesApi
from aggregator.api.serving_cert import CertKeyFiles, default_hosts, write_self_signed
from aggregator.api.tls_scope import TlsScopeProtocol
from aggregator.errors import FrontProxyConfigError
from aggregator.settings import AggregatorSettings

CA_FILE_VARIABLE = "KPULSE_AGGREGATOR_METRICS_API_REQUESTHEADER_CLIENT_CA_FILE"


@dataclass(frozen=True, slots=True)
class MetricsApiListener:
    """Where and how the metrics API listens, whom it trusts, and who authorizes its users."""

    host: str
    port: int
    serving: CertKeyFiles
    self_signed: bool
    trust: LiveTrust
    """The front-proxy trust in force and the TLS context verifying against its CA, reloaded."""
    authorizer: Authorizer | None
    """``None`` only when authorization was switched off (unsafe)."""
    kubernetes_url: str | None


def trust_from_settings(settings: AggregatorSettings) -> RequestHeaderTrust:
    """The front-proxy trust the ``KPULSE_AGGREGATOR_METRICS_API_REQUESTHEADER_*`` settings describe."""
    path = settings.metrics_api_requestheader_client_ca_file
    if path is None:
        raise FrontProxyConfigError(f"{CA_FILE_VARIABLE} is not set")
    try:
        ca_pem = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise FrontProxyConfigError(f"{CA_FILE_VARIABLE}: cannot read {path}: {exc}") from exc
    trust = RequestHeaderTrust(
        client_ca_pem=ca_pem,
        allowed_names=tuple(settings.metrics_api_requestheader_allowed_names),
        username_headers=tuple(settings.metrics_api_requestheader_username_headers),
        group_headers=tuple(settings.metrics_api_requestheader_group_headers),
        extra_headers_prefixes=tuple(settings.metrics_api_requestheader_extra_headers_prefix),
        uid_headers=tuple(settings.metrics_api_requestheader_uid_headers),
    )
    check_trust(trust, source=CA_FILE_VARIABLE)
    return trust


def prepare_metrics_api(
    settings: AggregatorSettings,
    workdir: Path,
    *,
    environ: Mapping[str, str] = os.environ,
    session: requests.Session | None = None,
) -> MetricsApiListener:
    """Everything the listener needs, files it writes going into ``workdir`` (private, removed at exit)."""
    if settings.metrics_api_port is None:
        raise ValueError("the metrics API is off (KPULSE_AGGREGATOR_METRICS_API_PORT is unset)")
    kube: KubernetesApi | None = None

    def kubernetes() -> KubernetesApi:
        nonlocal kube
        if kube is None:
            kube = KubernetesApi.from_settings(settings, session or requests.Session(), environ)
        return kube

    if settings.metrics_api_requestheader_client_ca_file is not None:
        source = TrustSource(
            f"{CA_FILE_VARIABLE}={settings.metrics_api_requestheader_client_ca_file}",
            lambda: trust_from_settings(settings),
        )
    else:
        kube_api = kubernetes()
        source = TrustSource(
            f"ConfigMap {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} at {kube_api.url}",
            lambda: parse_authentication_configmap(kube_api.get(CONFIGMAP_PATH)),
        )
    trust = source.load()

    if settings.metrics_api_cert_file is not None and settings.metrics_api_key_file is not None:
        serving = CertKeyFiles(settings.metrics_api_cert_file, settings.metrics_api_key_file)
        self_signed = False
    else:
        serving = write_self_signed(workdir, default_hosts(), datetime.datetime.now(datetime.UTC))
        self_signed = True

    authorizer: Authorizer | None = None
    if not settings.metrics_api_insecure_skip_authorization:
        authorizer = SubjectAccessReviewer(
            kubernetes(),
            allowed_ttl_seconds=settings.metrics_api_authorization_allowed_ttl_seconds,
            denied_ttl_seconds=settings.metrics_api_authorization_denied_ttl_seconds,
        )
    return MetricsApiListener(
        host=settings.metrics_api_host or settings.host,
        port=settings.metrics_api_port,
        serving=serving,
        self_signed=self_signed,
        trust=LiveTrust(source, trust, serving),
        authorizer=authorizer,
        kubernetes_url=kube.url if kube is not None else None,
    )


def metrics_api_config(app: FastAPI, listener: MetricsApiListener, *, access_log: bool) -> uvicorn.Config:
    """The uvicorn configuration of the metrics API: HTTPS, client certificates verified when sent."""
    return uvicorn.Config(
        app,
        host=listener.host,
        port=listener.port,
        log_config=None,
        access_log=access_log,
        lifespan="off",  # the main app's lifespan runs the pipeline; this one has nothing to start
        # The serving certificate, and client certificates verified against the CA set in force.
        ssl_context_factory=listener.trust.ssl_context_factory,
        http=TlsScopeProtocol,
    )

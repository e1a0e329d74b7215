"""Requests to the Kubernetes API server as the pod's service account: its bearer token and the cluster CA.

Usage::

    kube = KubernetesApi.from_settings(settings, requests.Session())
    payload = kube.get("/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication")
    answer = kube.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", body)
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Mapping
from pathlib import Path

import requests

from aggregator.errors import KubernetesApiError
from aggregator.settings import AggregatorSettings

SERVICE_HOST_ENV = "KUBERNETES_SERVICE_HOST"
SERVICE_PORT_ENV = "KUBERNETES_SERVICE_PORT"
"""Set by the kubelet in every pod: where the API server's Service answers."""
REQUEST_TIMEOUT_SECONDS = 5.0
"""Connect and read timeout of one request; the API server answers a SubjectAccessReview in milliseconds."""


def api_server_url(configured: str | None, environ: Mapping[str, str]) -> str | None:
    """The API server's base URL: ``configured``, else the in-cluster Service; ``None`` outside a cluster."""
    if configured:
        return configured.rstrip("/")
    host = environ.get(SERVICE_HOST_ENV, "").strip()
    port = environ.get(SERVICE_PORT_ENV, "").strip() or "443"
    if not host:
        return None
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            host = f"[{host}]"
    except ValueError:
        pass  # a DNS name
    return f"https://{host}:{port}"


class KubernetesApi:
    """GET and POST JSON on the API server; the token file is re-read per request (it is rotated)."""

    def __init__(
        self,
        session: requests.Session,
        *,
        url: str,
        token_file: Path,
        ca_file: Path | None,
        timeout_seconds: float = REQUEST_TIMEOUT_SECONDS,
    ) -> None:
        self.url = url.rstrip("/")
        self._session = session
        self._token_file = token_file
        self._ca_file = ca_file
        self._timeout = timeout_seconds

    @classmethod
    def from_settings(
        cls,
        settings: AggregatorSettings,
        session: requests.Session,
        environ: Mapping[str, str] = os.environ,
    ) -> KubernetesApi:
        """The API server the settings (or, in a pod, the environment) name, as the pod's service account."""
        configured = str(settings.metrics_api_kubernetes_url) if settings.metrics_api_kubernetes_url else None
        url = api_server_url(configured, environ)
        if url is None:
            raise KubernetesApiError(
                f"no Kubernetes API server: {SERVICE_HOST_ENV} is unset (not in a pod) and "
                "KPULSE_AGGREGATOR_METRICS_API_KUBERNETES_URL is not set"
            )
        account = settings.metrics_api_service_account_dir
        ca_file = account / "ca.crt"
        return cls(
            session, url=url, token_file=account / "token", ca_file=ca_file if ca_file.exists() else None
        )

    def get(self, path: str) -> bytes:
        """The body of ``GET path`` (2xx), or :class:`KubernetesApiError`."""
        return self._request("GET", path, None)

    def post(self, path: str, body: bytes) -> bytes:
        """The body of ``POST path`` with a JSON ``body`` (2xx), or :class:`KubernetesApiError`."""
        return self._request("POST", path, body)

    def _request(self, method: str, path: str, body: bytes | None) -> bytes:
        try:
            token = self._token_file.read_text().strip()
        except OSError as exc:
            raise KubernetesApiError(
                f"cannot read the service-account token {self._token_file}: {exc}"
            ) from exc
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            response = self._session.request(
                method,
                f"{self.url}{path}",
                data=body,
                headers=headers,
                # Per request, so that REQUESTS_CA_BUNDLE cannot replace the cluster CA.
                verify=str(self._ca_file) if self._ca_file is not None else True,
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            raise KubernetesApiError(
                f"{method} {path}: the API server at {self.url} did not answer: {exc}"
            ) from exc
        if not 200 <= response.status_code < 300:
            raise KubernetesApiError(
                f"{method} {path}: the API server answered HTTP {response.status_code}: {_message(response)}"
            )
        return response.content


def _message(response: requests.Response) -> str:
    # The API server explains failures in a Status object; anything else is shown truncated.
    try:
        status = json.loads(response.content)
    except ValueError:
        return response.text[:300]
    if isinstance(status, dict) and isinstance(status.get("message"), str):
        return str(status["message"])
    return response.text[:300]

"""A small HTTPS stand-in of the Kubernetes API server: what an aggregated API server asks of it, no more.

No kube-apiserver can run here, so this answers the two requests the metrics API makes, shaped as the
Kubernetes API defines them: ``GET`` of the ConfigMap ``kube-system/extension-apiserver-authentication``
(list values as JSON arrays, as the API server writes them) and ``POST`` of an
``authorization.k8s.io/v1`` SubjectAccessReview (201 with ``status.allowed`` decided by a test's policy).
Every other path is a 404 ``Status``; a request without the service account's bearer token is a 401.
It serves with its own CA and lays out a service-account directory (``token``, ``ca.crt``, ``namespace``)
the way the kubelet mounts one. Every request is recorded.

Usage::

    with KubeApiStandIn(tmp_path, configmap_data=data, policy=lambda spec: (True, "")) as api:
        env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api.port),
               "KPULSE_AGGREGATOR_METRICS_API_SERVICE_ACCOUNT_DIR": str(api.service_account_dir)}
        ...
        assert api.reviews()[0]["spec"]["user"] == "alice"
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import ssl
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

from tests.pki import TestCa

CONFIGMAP_PATH = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
REVIEW_PATH = "/apis/authorization.k8s.io/v1/subjectaccessreviews"

Policy = Callable[[dict[str, Any]], tuple[bool, str]]
"""Decides a SubjectAccessReview ``spec``: ``(allowed, reason)``."""


def authentication_configmap_data(
    requestheader_ca_pem: str,
    *,
    allowed_names: Sequence[str],
    username_headers: Sequence[str] = ("X-Remote-User",),
    group_headers: Sequence[str] = ("X-Remote-Group",),
    extra_prefixes: Sequence[str] = ("X-Remote-Extra-",),
    client_ca_pem: str | None = None,
) -> dict[str, str]:
    """``data`` of extension-apiserver-authentication as the API server writes it (empty lists left out)."""
    data = {
        "requestheader-client-ca-file": requestheader_ca_pem,
        "requestheader-username-headers": json.dumps(list(username_headers)),
        "requestheader-group-headers": json.dumps(list(group_headers)),
        "requestheader-extra-headers-prefix": json.dumps(list(extra_prefixes)),
    }
    if allowed_names:
        data["requestheader-allowed-names"] = json.dumps(list(allowed_names))
    if client_ca_pem is not None:
        data["client-ca-file"] = client_ca_pem
    return data


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request the stand-in received."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes


class KubeApiStandIn:
    """The stand-in server on a free loopback port, its CA, and a service-account directory for it."""

    def __init__(
        self,
        directory: Path,
        *,
        configmap_data: Mapping[str, str] | None,
        policy: Policy,
    ) -> None:
        self._configmap_data = dict(configmap_data) if configmap_data is not None else None
        self.policy = policy
        self.token = secrets.token_urlsafe(24)
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self.ca = TestCa("stand-in kube-apiserver CA")
        serving = self.ca.issue(directory, "kube-apiserver", client=False, hosts=["127.0.0.1", "localhost"])
        self.service_account_dir = directory / f"serviceaccount-{secrets.token_hex(4)}"
        self.service_account_dir.mkdir()
        (self.service_account_dir / "ca.crt").write_text(self.ca.pem)
        (self.service_account_dir / "namespace").write_text("kpulse")
        self.set_token(self.token)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(serving.cert_file, serving.key_file)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port: int = self._server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._running = False

    def set_configmap_data(self, data: Mapping[str, str] | None) -> None:
        """Publish new ConfigMap ``data`` (a rotated front-proxy CA, new names); ``None``: no ConfigMap."""
        with self._lock:
            self._configmap_data = dict(data) if data is not None else None

    def set_token(self, token: str) -> None:
        """Rotate the service account's token: the file and what the server accepts."""
        self.token = token
        (self.service_account_dir / "token").write_text(token)

    def start(self) -> KubeApiStandIn:
        """Serve in a thread."""
        self._thread.start()
        self._running = True
        return self

    def stop(self) -> None:
        """Stop serving, close the port and cut open connections: from now on nothing answers."""
        if self._running:
            self._server.shutdown()
            self._running = False
        self._server.server_close()
        with self._lock:
            for connection in self._connections:
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def _track(self, connection: socket.socket, *, open_: bool) -> None:
        with self._lock:
            if open_:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def __enter__(self) -> KubeApiStandIn:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def recorded(self, path: str) -> list[Recorded]:
        """The requests received on ``path``, oldest first."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def reviews(self) -> list[dict[str, Any]]:
        """The SubjectAccessReviews received, as sent."""
        return [json.loads(r.body) for r in self.recorded(REVIEW_PATH)]

    def _record(self, request: Recorded) -> None:
        with self._lock:
            self.requests.append(request)

    def answer(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, Any]:
        """Status code and JSON body for one request, as the API server would answer it."""
        self._record(Recorded(method, path, dict(headers), body))
        if headers.get("authorization") != f"Bearer {self.token}":
            return 401, _status(401, "Unauthorized", "Unauthorized")
        with self._lock:
            configmap_data = self._configmap_data
        if method == "GET" and path == CONFIGMAP_PATH and configmap_data is not None:
            return 200, {
                "kind": "ConfigMap",
                "apiVersion": "v1",
                "metadata": {
                    "name": "extension-apiserver-authentication",
                    "namespace": "kube-system",
                    "uid": "5b0f2f7c-6c1e-4a63-9d5e-0e0c3d1b2a10",
                    "resourceVersion": "42",
                    "creationTimestamp": "2024-05-01T10:00:00Z",
                },
                "data": configmap_data,
            }
        if method == "POST" and path == REVIEW_PATH:
            review = json.loads(body)
            if review.get("apiVersion") != "authorization.k8s.io/v1" or review.get("kind") != (
                "SubjectAccessReview"
            ):
                return 400, _status(400, "BadRequest", "not an authorization.k8s.io/v1 SubjectAccessReview")
            allowed, reason = self.policy(review["spec"])
            status: dict[str, Any] = {"allowed": allowed}
            if reason:
                status["reason"] = reason
            return 201, {**review, "metadata": {"creationTimestamp": None}, "status": status}
        return 404, _status(404, "NotFound", "the server could not find the requested resource")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _handler_for(standin: KubeApiStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            standin._track(self.connection, open_=True)

        def finish(self) -> None:
            standin._track(self.connection, open_=False)
            super().finish()

        def _respond(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            code, payload = standin.answer(self.command, self.path, headers, body)
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = _respond  # noqa: N815
        do_POST = _respond  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:
            return  # recorded in standin.requests instead of stderr

    return Handler

"""A fake kubelet for tests: a real local HTTP(S) server answering like a kubelet and like the API server.

It serves the recorded captures of tests/fixtures/kubelet/duckboat-01 (``/stats/summary``, ``/pods``, and
``/api/v1/nodes/<name>``) with a bearer-token check, and can be told to answer 401/403/500, garbage, a
truncated body, or nothing at all.

Usage::

    with serving(FakeKubelet(files=kubelet_files(), token=None), None) as fake:   # plain HTTP, no token
        source = KubeletSource(requests.Session(), base_url=fake.url, node_name=NODE, token_file=None)
        fake.mode = "500"
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "kubelet" / "duckboat-01"
NODE = "duckboat-01"
TOKEN = "token-one"
HANG_RELEASE_SECONDS = 30.0
"""A hanging handler gives up after this long at the latest (the test releases it much sooner)."""


@dataclass
class FakeKubelet:
    """What the server answers; tests change ``mode`` and ``token`` between scrapes."""

    url: str = ""
    token: str | None = TOKEN
    mode: str = "ok"
    """ok, 500, garbage, truncated or hang."""
    forbidden: set[str] = field(default_factory=set)
    """Paths answered with 403."""
    files: dict[str, bytes] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    """(path, Authorization header) of every request seen."""

    def answer(self, handler: BaseHTTPRequestHandler) -> None:
        authorization = handler.headers.get("Authorization")
        self.requests.append((handler.path, authorization))
        if self.mode == "hang":
            self.release.wait(HANG_RELEASE_SECONDS)
            return
        if self.token is not None and authorization != f"Bearer {self.token}":
            self._send(handler, 401, b'{"kind":"Status","code":401,"message":"Unauthorized"}')
            return
        if handler.path in self.forbidden:
            self._send(handler, 403, b"Forbidden (user=system:serviceaccount:kpulse:collector, verb=get)")
            return
        body = self.files.get(handler.path)
        if body is None:
            self._send(handler, 404, b"404 page not found")
        elif self.mode == "500":
            self._send(handler, 500, b"Internal Server Error: failed to get node info")
        elif self.mode == "garbage":
            self._send(handler, 200, b"<html><body>not a kubelet</body></html>")
        elif self.mode == "truncated":
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body[: len(body) // 2])
            handler.close_connection = True
        else:
            self._send(handler, 200, body)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        self.server.fake.answer(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeKubelet, context: ssl.SSLContext | None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake
        self.context = context

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs in the connection's own thread, so a client that fails it (or never
        # starts it) does not hold up the accept loop.
        if self.context is None:
            super().finish_request(request, client_address)
            return
        try:
            connection = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        with connection:
            super().finish_request(connection, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up mid-answer are part of these tests


@contextlib.contextmanager
def serving(fake: FakeKubelet, context: ssl.SSLContext | None) -> Iterator[FakeKubelet]:
    """Serve ``fake`` on a free loopback port, over TLS with ``context`` (``None``: plain HTTP)."""
    server = _Server(fake, context)
    scheme = "https" if context is not None else "http"
    fake.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-kubelet", daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def kubelet_files() -> dict[str, bytes]:
    """The recorded answers, by path."""
    nodes = (FIXTURE / "nodes.json").read_bytes()
    return {
        "/stats/summary": (FIXTURE / "stats-summary.json").read_bytes(),
        "/pods": (FIXTURE / "pods.json").read_bytes(),
        "/api/v1/nodes": nodes,
        # The API server's answer for one node; the NodeList stands in (the parser accepts both shapes).
        f"/api/v1/nodes/{NODE}": nodes,
    }

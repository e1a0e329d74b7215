"""The v2 backend against a local stand-in HTTP server (no InfluxDB 2.x can run here: Debian ships 1.6).

What these tests can honestly show: the request influxdb-client sends (path, org, bucket, precision,
token, gzip body with our line protocol) and how answers map to stored / refused / retried. Whether a real
InfluxDB 2.x accepts it is not exercised.
"""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

from aggregator.errors import SinkError
from aggregator.points import Point
from aggregator.sinks.influx_v2 import InfluxV2Backend
from aggregator.sinks.lineprotocol import to_lines
from tests.helpers import free_tcp_port


@dataclass
class Recorded:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class StandIn:
    """Answers ``/api/v2/write`` with ``status`` and ``answer``; records each request."""

    status: int = 204
    answer: dict[str, str] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    state = StandIn()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            parsed = urlparse(self.path)
            state.requests.append(
                Recorded(parsed.path, parse_qs(parsed.query), dict(self.headers), self.rfile.read(length))
            )
            body = json.dumps(state.answer).encode() if state.answer else b""
            self.send_response(state.status)
            if body:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # /ping
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def backend(stand_in: StandIn) -> Iterator[InfluxV2Backend]:
    backend = InfluxV2Backend(url=stand_in.url, token="s3cret", org="ops", bucket="kpulse", timeout_seconds=2)
    yield backend
    backend.close()


POINTS = [
    Point(
        "container", {"cluster": "c", "pod": "p 1"}, {"cpu_usage_millicores": 12.5}, 1_700_000_000_000_000_001
    ),
    Point("node", {"cluster": "c", "node": "n1"}, {"memory_usage_bytes": 2048.0}, 1_700_000_000_000_000_002),
]


def test_the_write_request_carries_org_bucket_ns_precision_token_and_our_line_protocol_gzipped(
    stand_in: StandIn, backend: InfluxV2Backend
) -> None:
    result = backend.write_batch(POINTS)

    assert (result.sent, result.rejected, result.message) == (2, 0, None)
    (request,) = stand_in.requests
    assert request.path == "/api/v2/write"
    assert request.query == {"org": ["ops"], "bucket": ["kpulse"], "precision": ["ns"]}
    assert request.headers["Authorization"] == "Token s3cret"
    assert request.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(request.body).decode().split("\n") == to_lines(POINTS)


def test_a_partial_write_refusal_carries_the_servers_message_and_count(
    stand_in: StandIn, backend: InfluxV2Backend
) -> None:
    stand_in.status = 400
    stand_in.answer = {
        "code": "invalid",
        "message": 'partial write: field type conflict: input field "cpu_usage_millicores" on measurement '
        '"container" is type float, already exists as type integer dropped=1',
    }

    result = backend.write_batch(POINTS)

    assert result.rejected == 1
    assert result.message is not None
    assert result.message.startswith("HTTP 400: partial write: field type conflict")


def test_a_whole_refusal_counts_every_point(stand_in: StandIn, backend: InfluxV2Backend) -> None:
    stand_in.status = 413
    stand_in.answer = {"code": "request too large", "message": "unable to read data: request too large"}

    result = backend.write_batch(POINTS)

    assert (result.rejected, result.message) == (2, "HTTP 413: unable to read data: request too large")


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (503, "service unavailable"),
        (429, "too many requests"),
        (401, "unauthorized access"),
        (404, 'bucket "kpulse" not found'),
    ],
)
def test_outages_credentials_and_missing_buckets_are_transient(
    stand_in: StandIn, backend: InfluxV2Backend, status: int, message: str
) -> None:
    stand_in.status = status
    stand_in.answer = {"code": "x", "message": message}

    with pytest.raises(SinkError, match=message):
        backend.write_batch(POINTS)


def test_an_unreachable_server_is_transient() -> None:
    backend = InfluxV2Backend(
        url=f"http://127.0.0.1:{free_tcp_port()}", token="t", org="o", bucket="b", timeout_seconds=1
    )
    with pytest.raises(SinkError, match="unreachable"):
        backend.write_batch(POINTS)
    with pytest.raises(SinkError):
        backend.ping()
    backend.close()


def test_ping_answers(backend: InfluxV2Backend) -> None:
    backend.ping()

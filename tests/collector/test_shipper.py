"""The shipper over real HTTP: delivery, outage buffering and replay in order, overflow, rejection."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
import requests

from collector.shipper import Shipper
from collector.wire import Batch
from tests.helpers import wait_until


class _Peer:
    """A local HTTP server that records ingest bodies and answers with a settable status."""

    def __init__(self) -> None:
        self.received: list[dict[str, object]] = []
        self.auth: list[str | None] = []
        self.status = 202
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                peer.auth.append(self.headers.get("Authorization"))
                status = peer.status
                if status < 300:
                    peer.received.append(orjson.loads(gzip.decompress(body)))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b'{"detail": "nope"}' if status >= 400 else b"{}")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._handler = Handler
        self.server: ThreadingHTTPServer | None = None
        self.port = 0

    def start(self, port: int = 0) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def peer() -> Iterator[_Peer]:
    peer = _Peer()
    peer.start()
    yield peer
    if peer.server is not None:
        peer.stop()


def _batch(n: int) -> Batch:
    return Batch(batch_id=f"b{n}", node="n1", source="docker", scraped_at_ns=n * 10**9, interval_seconds=1)


def _shipper(url: str, **kwargs: object) -> Shipper:
    options: dict[str, object] = {
        "retry_initial_seconds": 0.05,
        "retry_max_seconds": 0.2,
        "timeout_seconds": 2.0,
    }
    options.update(kwargs)
    shipper = Shipper(requests.Session(), url=url, token="s3cret", **options)  # type: ignore[arg-type]
    shipper.start()
    return shipper


def test_delivers_gzip_batches_in_order_with_the_bearer_token(peer: _Peer) -> None:
    shipper = _shipper(peer.url)
    for n in range(5):
        shipper.submit(_batch(n))
    assert shipper.flush(10)
    shipper.close()
    assert [body["batch_id"] for body in peer.received] == [f"b{n}" for n in range(5)]
    assert set(peer.auth) == {"Bearer s3cret"}
    assert shipper.stats.batches_sent == 5


def test_outage_is_buffered_and_replayed_in_order(peer: _Peer) -> None:
    port = peer.port
    peer.stop()
    shipper = _shipper(f"http://127.0.0.1:{port}")
    for n in range(10):
        shipper.submit(_batch(n))
    wait_until(lambda: shipper.stats.send_failures >= 2, 10, "shipper never tried the unreachable aggregator")
    assert shipper.buffered == 10
    peer.start(port)
    assert shipper.flush(15), "buffer did not drain after the aggregator came back"
    shipper.close()
    assert [body["batch_id"] for body in peer.received] == [f"b{n}" for n in range(10)]
    assert shipper.stats.batches_dropped_overflow == 0


def test_a_5xx_answer_is_not_an_acknowledgement_and_the_batch_is_resent(peer: _Peer) -> None:
    # An aggregator that cannot make a batch durable answers 5xx (or dies: connection reset): resend it.
    peer.status = 503
    shipper = _shipper(peer.url)
    for n in range(3):
        shipper.submit(_batch(n))
    wait_until(lambda: shipper.stats.send_failures >= 2, 10, "shipper never retried after a 503")
    assert shipper.buffered == 3
    peer.status = 202
    assert shipper.flush(15), "buffer did not drain after the aggregator recovered"
    shipper.close()
    assert [body["batch_id"] for body in peer.received] == ["b0", "b1", "b2"]
    assert shipper.stats.batches_rejected == shipper.stats.batches_dropped_overflow == 0


def test_overflow_drops_the_oldest_and_counts_them(peer: _Peer, caplog: pytest.LogCaptureFixture) -> None:
    port = peer.port
    peer.stop()
    shipper = _shipper(f"http://127.0.0.1:{port}", max_batches=3)
    for n in range(8):
        shipper.submit(_batch(n))
    assert shipper.stats.batches_dropped_overflow >= 5
    peer.start(port)
    assert shipper.flush(15)
    shipper.close()
    delivered = [body["batch_id"] for body in peer.received]
    # The newest three always survive; the head may have been in flight when the overflow began.
    assert delivered[-3:] == ["b5", "b6", "b7"]
    assert len(delivered) + shipper.stats.batches_dropped_overflow == 8
    assert sum("buffer full" in record.message for record in caplog.records) == 1


def test_permanent_rejection_is_dropped_logged_and_does_not_block_the_queue(
    peer: _Peer, caplog: pytest.LogCaptureFixture
) -> None:
    peer.status = 422
    shipper = _shipper(peer.url)
    shipper.submit(_batch(1))
    wait_until(lambda: shipper.stats.batches_rejected == 1, 10, "422 was not treated as a rejection")
    peer.status = 202
    shipper.submit(_batch(2))
    assert shipper.flush(10)
    shipper.close()
    assert [body["batch_id"] for body in peer.received] == ["b2"]
    assert any("rejected batch b1 with 422" in record.message for record in caplog.records)


def test_refused_credentials_are_retried_not_dropped(peer: _Peer) -> None:
    peer.status = 401
    shipper = _shipper(peer.url)
    shipper.submit(_batch(1))
    wait_until(lambda: shipper.stats.send_failures >= 2, 10, "401 was not retried")
    assert shipper.buffered == 1
    peer.status = 202
    assert shipper.flush(10)
    shipper.close()
    assert [body["batch_id"] for body in peer.received] == ["b1"]

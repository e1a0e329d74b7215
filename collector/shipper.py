"""Delivery of batches to the aggregator: gzip JSON over HTTP, retried, buffered (bounded) while it is away.

A batch is encoded once when it is submitted and kept as compressed bytes, so the buffer's memory is
bounded by ``max_batches`` × the compressed batch size. One sender thread delivers in order, oldest first;
a batch is removed only when the aggregator acknowledged it (2xx) or rejected it for good (400/413/422:
resending the same bytes cannot help, so it is dropped, logged with the server's message and counted).
When the buffer is full the oldest batch is dropped, counted, and logged once per overflow episode.

Usage::

    shipper = Shipper(requests.Session(), url="http://127.0.0.1:8080", token=None)
    shipper.start()
    shipper.submit(batch)
    shipper.close(timeout_seconds=5)
"""

from __future__ import annotations

import gzip
import logging
import threading
from collections import deque
from dataclasses import dataclass

import requests

from collector.wire import Batch

log = logging.getLogger(__name__)

INGEST_PATH = "/api/v1/ingest"
_PERMANENT_STATUSES = frozenset({400, 413, 422})


@dataclass(slots=True)
class ShipperStats:
    """Counters of the shipper's life, for logs and tests."""

    batches_submitted: int = 0
    batches_sent: int = 0
    batches_dropped_overflow: int = 0
    batches_rejected: int = 0
    send_failures: int = 0


@dataclass(frozen=True, slots=True)
class _Encoded:
    batch_id: str
    body: bytes


class Shipper:
    """Sends batches to ``{url}/api/v1/ingest`` in order, with retry, backoff and a bounded buffer."""

    def __init__(
        self,
        session: requests.Session,
        *,
        url: str,
        token: str | None,
        timeout_seconds: float = 10.0,
        max_batches: int = 360,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
    ) -> None:
        self._session = session
        self._endpoint = url.rstrip("/") + INGEST_PATH
        self._headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._timeout_seconds = timeout_seconds
        self._max_batches = max_batches
        self._retry_initial_seconds = retry_initial_seconds
        self._retry_max_seconds = retry_max_seconds
        self._pending: deque[_Encoded] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._overflowing = False
        self._failing_since_log = False
        self._thread: threading.Thread | None = None
        self.stats = ShipperStats()

    @property
    def buffered(self) -> int:
        """Batches waiting for delivery."""
        with self._cond:
            return len(self._pending)

    def start(self) -> None:
        """Start the sender thread."""
        self._thread = threading.Thread(target=self._run, name="kpulse-shipper", daemon=True)
        self._thread.start()

    def submit(self, batch: Batch) -> None:
        """Queue one batch for delivery; never blocks on the network."""
        body = gzip.compress(batch.model_dump_json(exclude_none=True).encode(), compresslevel=5)
        with self._cond:
            self.stats.batches_submitted += 1
            if len(self._pending) >= self._max_batches:
                self._pending.popleft()
                self.stats.batches_dropped_overflow += 1
                if not self._overflowing:
                    self._overflowing = True
                    log.error(
                        "aggregator unreachable and buffer full (%d batches): dropping the oldest batches; "
                        "%d dropped so far",
                        self._max_batches,
                        self.stats.batches_dropped_overflow,
                    )
            self._pending.append(_Encoded(batch.batch_id, body))
            self._cond.notify()

    def flush(self, timeout_seconds: float) -> bool:
        """Wait until every queued batch was delivered or dropped; ``True`` if it drained in time."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending, timeout=timeout_seconds)

    def close(self, timeout_seconds: float = 5.0) -> None:
        """Try to deliver what is queued within ``timeout_seconds``, then stop the sender."""
        self.flush(timeout_seconds)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout_seconds + 1)
        if self._pending:
            log.error("shutting down with %d undelivered batches", len(self._pending))

    def _run(self) -> None:
        backoff = self._retry_initial_seconds
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._closing)
                if self._closing:
                    return
                head = self._pending[0]
            outcome = self._send(head)
            with self._cond:
                if outcome != "retry":
                    # The head may have been dropped by overflow meanwhile; only remove it if still there.
                    if self._pending and self._pending[0] is head:
                        self._pending.popleft()
                    if not self._pending:
                        self._overflowing = False
                    self._cond.notify_all()
                    backoff = self._retry_initial_seconds
                    continue
                # Wait before retrying, but wake at once for shutdown.
                self._cond.wait_for(lambda: self._closing, timeout=backoff)
                backoff = min(backoff * 2, self._retry_max_seconds)

    def _send(self, item: _Encoded) -> str:
        """POST one batch: ``"sent"``, ``"rejected"`` (permanent) or ``"retry"``."""
        try:
            response = self._session.post(
                self._endpoint, data=item.body, headers=self._headers, timeout=self._timeout_seconds
            )
        except requests.RequestException as exc:
            return self._failed(f"cannot reach aggregator at {self._endpoint}: {exc}")
        if response.ok:
            self.stats.batches_sent += 1
            if self._failing_since_log:
                self._failing_since_log = False
                log.info("aggregator reachable again; %d batches buffered", self.buffered)
            return "sent"
        message = response.text[:500]
        if response.status_code in _PERMANENT_STATUSES:
            self.stats.batches_rejected += 1
            log.error(
                "aggregator rejected batch %s with %d: %s (dropped: resending cannot help)",
                item.batch_id,
                response.status_code,
                message,
            )
            return "rejected"
        if response.status_code in (401, 403):
            return self._failed(
                f"aggregator refused our credentials ({response.status_code}: {message}); "
                "check KPULSE_INGEST_TOKEN on both sides"
            )
        return self._failed(f"aggregator answered {response.status_code}: {message}")

    def _failed(self, reason: str) -> str:
        self.stats.send_failures += 1
        if not self._failing_since_log:
            self._failing_since_log = True
            log.warning("%s; keeping batches and retrying with backoff", reason)
        return "retry"

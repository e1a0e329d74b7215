"""The writer in front of an InfluxDB backend: a bounded in-memory buffer drained by one background thread.

``write`` only enqueues (it never touches the network). The thread sends batches of at most
``batch_points`` in order, when that many have accumulated, when the oldest queued point has waited
``flush_interval_seconds``, or when someone calls ``flush``. A transient failure (InfluxDB unreachable, 5xx)
is retried with capped exponential backoff and nothing behind it overtakes it; points InfluxDB refuses for
good are counted and logged with the server's message. When the buffer is full the oldest queued points are
dropped, counted, and logged once per overflow episode: nothing is lost without a count and a log line.

Usage::

    backend = InfluxV1Backend(requests.Session(), url="http://127.0.0.1:8086", database="kpulse")
    writer = BufferedWriter(backend, batch_points=5000, flush_interval_seconds=1.0, max_points=2_000_000)
    writer.write(points, scraped_at_ns=batch.scraped_at_ns)
    writer.flush(timeout_seconds=5)   # True when everything accepted so far was written or failed for good
    writer.close()
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from aggregator.errors import SinkError
from aggregator.points import Point

log = logging.getLogger(__name__)

_REJECT_LOG_EVERY_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What InfluxDB did with one batch: it stored ``sent - rejected`` points; ``message`` is its refusal."""

    sent: int
    rejected: int = 0
    message: str | None = None


class Backend(Protocol):
    """One InfluxDB API: writes one batch per call, synchronously (the writer thread calls it)."""

    def write_batch(self, points: Sequence[Point]) -> WriteResult:
        """Write ``points`` in one request; raise ``SinkError`` when retrying the same points may succeed."""
        ...

    def ping(self) -> None:
        """Return when InfluxDB answers; raise ``SinkError`` otherwise."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class WriterStats:
    """A snapshot of a sink's counters (points unless named otherwise; times are wall clock in ns)."""

    points_accepted: int = 0
    points_written: int = 0
    points_rejected: int = 0
    """Refused by InfluxDB for good (type conflict, unparsable) and never retried."""
    points_dropped: int = 0
    """Dropped by the writer: oldest points on buffer overflow, and anything unwritten at shutdown."""
    write_errors: int = 0
    """Failed write requests, transient (retried) and permanent alike."""
    buffer_depth: int = 0
    """Points accepted but not yet written: queued plus the batch in flight."""
    buffer_capacity: int | None = None
    """Most points the queue holds (``None``: unbounded)."""
    last_success_ns: int | None = None
    last_error: str | None = None
    """The last write's failure while InfluxDB has not accepted a write since; ``None`` when healthy."""
    spool_bytes: int | None = None
    """Bytes on disk in the spool (``None``: no spool, the buffer is memory only)."""
    spool_capacity_bytes: int | None = None
    spool_points_dropped: int = 0
    """Points the spool dropped (oldest segments when full, corrupt records); in ``points_dropped`` too."""

    @property
    def buffer_fill_ratio(self) -> float:
        """Queue fill level, 0..1 (0 when unbounded)."""
        if not self.buffer_capacity:
            return 0.0
        return min(1.0, self.buffer_depth / self.buffer_capacity)


@runtime_checkable
class MonitoredSink(Protocol):
    """A ``Sink`` that also reports counters, checks InfluxDB, and takes each write's scrape time."""

    latency_observer: Callable[[float], None] | None
    """Called with each write's scrape-to-store latency in seconds (set it to hook up metrics)."""

    def write(self, points: Sequence[Point], *, scraped_at_ns: int | None = None) -> None: ...

    def flush(self, timeout_seconds: float | None = None) -> bool: ...

    def close(self) -> None: ...

    def stats(self) -> WriterStats: ...

    def ping(self) -> None: ...


@dataclass(slots=True, eq=False)
class _Chunk:
    """The points of one ``write`` call still queued or in flight."""

    points: Sequence[Point]
    scraped_at_ns: int | None
    start: int = 0
    """Index of the first point not yet taken into a batch or dropped."""
    unfinished: int = 0
    """Points not yet written, rejected or dropped; the write's latency is observed when it reaches 0."""


@dataclass(slots=True)
class _Batch:
    points: list[Point] = field(default_factory=list)
    pieces: list[tuple[_Chunk, int]] = field(default_factory=list)


class BufferedWriter:
    """A ``Sink`` that buffers up to ``max_points`` and writes them to ``backend`` from a background thread.

    ``latency_observer`` receives, in seconds, the time from a write's ``scraped_at_ns`` to the moment its
    last point was stored. The queue holds at most ``max_points``; the batch in flight (at most
    ``batch_points``) comes on top.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        batch_points: int = 5000,
        flush_interval_seconds: float = 1.0,
        max_points: int = 2_000_000,
        retry_initial_seconds: float = 0.5,
        retry_max_seconds: float = 30.0,
        clock_ns: Callable[[], int] = time.time_ns,
        latency_observer: Callable[[float], None] | None = None,
    ) -> None:
        if batch_points < 1 or max_points < 1:
            raise ValueError("batch_points and max_points must be at least 1")
        self._backend = backend
        self._batch_points = batch_points
        self._interval = flush_interval_seconds
        self._max_points = max_points
        self._retry_initial = retry_initial_seconds
        self._retry_max = retry_max_seconds
        self._clock_ns = clock_ns
        self.latency_observer = latency_observer

        self._cond = threading.Condition()
        self._queue: deque[_Chunk] = deque()
        self._queued = 0
        self._in_flight = 0
        self._oldest_queued_at: float | None = None
        self._flush_waiters = 0
        self._closed = False
        self._stopping = False

        # Monotonic totals: a flush waits until everything accepted before it has finished one way or another.
        self._accepted = 0
        self._finished = 0
        self._written = 0
        self._rejected = 0
        self._dropped = 0
        self._write_errors = 0
        self._last_success_ns: int | None = None
        self._last_error: str | None = None

        self._overflowing = False
        self._dropped_this_episode = 0
        self._failing_since: float | None = None
        self._failed_attempts = 0
        self._last_reject_log: float | None = None
        self._rejects_not_logged = 0
        self._dropped_after_close_logged = False

        self._thread = threading.Thread(target=self._run, name="kpulse-influx-writer", daemon=True)
        self._thread.start()

    # -- the Sink protocol ---------------------------------------------------------------------------

    def write(self, points: Sequence[Point], *, scraped_at_ns: int | None = None) -> None:
        """Queue ``points`` (never blocks on the network); ``scraped_at_ns`` is their scrape time in ns."""
        if not points:
            return
        chunk = _Chunk(tuple(points), scraped_at_ns, unfinished=len(points))
        with self._cond:
            self._accepted += len(points)
            if self._closed:
                self._drop_after_close(chunk)
                return
            self._queue.append(chunk)
            self._queued += len(points)
            if self._queued > self._max_points:
                self._drop_oldest(self._queued - self._max_points)
            if self._oldest_queued_at is None:
                # The writer sleeps without a deadline while the queue is empty: give it one now.
                self._oldest_queued_at = time.monotonic()
                self._cond.notify_all()
            elif self._queued >= self._batch_points:
                self._cond.notify_all()

    def flush(self, timeout_seconds: float | None = None) -> bool:
        """Write what is queued now; ``True`` when all of it was written or failed for good in time (s)."""
        with self._cond:
            target = self._accepted
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: self._finished >= target, timeout=timeout_seconds)
            finally:
                self._flush_waiters -= 1

    def close(self, timeout_seconds: float = 10.0) -> None:
        """Drain for up to ``timeout_seconds``, then stop; what is still unwritten is counted as dropped."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
        self.flush(timeout_seconds)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        # A request in flight ends by the backend's own timeout; do not wait for it forever.
        self._thread.join(timeout=max(1.0, timeout_seconds))
        with self._cond:
            lost = self._queued
            if not self._thread.is_alive():
                lost += self._in_flight
                self._in_flight = 0
            if lost:
                self._dropped += lost
                self._finished += lost
                self._queued = 0
                self._queue.clear()
                log.error("shut down with %d points not written to InfluxDB (counted as dropped)", lost)
            self._cond.notify_all()
        self._backend.close()

    # -- observation ---------------------------------------------------------------------------------

    def stats(self) -> WriterStats:
        """The writer's counters now."""
        with self._cond:
            return WriterStats(
                points_accepted=self._accepted,
                points_written=self._written,
                points_rejected=self._rejected,
                points_dropped=self._dropped,
                write_errors=self._write_errors,
                buffer_depth=self._queued + self._in_flight,
                buffer_capacity=self._max_points,
                last_success_ns=self._last_success_ns,
                last_error=self._last_error,
            )

    def ping(self) -> None:
        """Ask InfluxDB whether it is up; raises ``SinkError`` when it is not."""
        self._backend.ping()

    # -- under the lock ------------------------------------------------------------------------------

    def _drop_oldest(self, count: int) -> None:
        remaining = count
        while remaining and self._queue:
            chunk = self._queue[0]
            available = len(chunk.points) - chunk.start
            taken = min(available, remaining)
            chunk.start += taken
            chunk.unfinished -= taken
            remaining -= taken
            if chunk.start == len(chunk.points):
                self._queue.popleft()
        dropped = count - remaining
        self._queued -= dropped
        self._dropped += dropped
        self._finished += dropped
        self._dropped_this_episode += dropped
        if not self._overflowing:
            self._overflowing = True
            log.error(
                "write buffer full (%d points, InfluxDB slower than ingest or unreachable): "
                "dropping the oldest points until it drains",
                self._max_points,
            )

    def _drop_after_close(self, chunk: _Chunk) -> None:
        self._dropped += len(chunk.points)
        self._finished += len(chunk.points)
        if not self._dropped_after_close_logged:
            self._dropped_after_close_logged = True
            log.error("points written after the InfluxDB writer was closed are dropped (counted)")

    def _take_batch(self) -> _Batch:
        batch = _Batch()
        while self._queue and len(batch.points) < self._batch_points:
            chunk = self._queue[0]
            end = min(len(chunk.points), chunk.start + self._batch_points - len(batch.points))
            batch.points.extend(chunk.points[chunk.start : end])
            batch.pieces.append((chunk, end - chunk.start))
            chunk.start = end
            if end == len(chunk.points):
                self._queue.popleft()
        self._queued -= len(batch.points)
        self._in_flight = len(batch.points)
        if not self._queued:
            self._oldest_queued_at = None
        # Points left behind by a full batch keep their old arrival time, so they follow at once.
        return batch

    def _due(self) -> bool:
        if not self._queued:
            return False
        if self._queued >= self._batch_points or self._flush_waiters or self._closed:
            return True
        return (
            self._oldest_queued_at is not None and time.monotonic() >= self._oldest_queued_at + self._interval
        )

    def _next_batch(self) -> _Batch | None:
        with self._cond:
            while not self._stopping:
                if self._due():
                    return self._take_batch()
                timeout = None
                if self._oldest_queued_at is not None:
                    timeout = max(0.0, self._oldest_queued_at + self._interval - time.monotonic())
                self._cond.wait(timeout)
            return None

    # -- the writer thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._deliver(batch)

    def _deliver(self, batch: _Batch) -> None:
        delay = self._retry_initial
        while True:
            try:
                result = self._backend.write_batch(batch.points)
            except SinkError as exc:
                if not self._wait_to_retry(exc, delay):
                    return
                delay = min(delay * 2, self._retry_max)
                continue
            except Exception as exc:  # the writer thread must survive a bug in one batch
                log.exception("InfluxDB backend failed unexpectedly; %d points lost", len(batch.points))
                result = WriteResult(sent=len(batch.points), rejected=len(batch.points), message=repr(exc))
            self._commit(batch, result)
            return

    def _wait_to_retry(self, exc: SinkError, delay: float) -> bool:
        """Count a transient failure and wait ``delay`` s; ``False`` when the writer is stopping instead."""
        with self._cond:
            self._write_errors += 1
            self._last_error = str(exc)
            self._failed_attempts += 1
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                log.warning("InfluxDB write failed, keeping points and retrying with backoff: %s", exc)
            else:
                log.debug("InfluxDB write failed again (attempt %d): %s", self._failed_attempts, exc)
            self._cond.wait_for(lambda: self._stopping, timeout=delay)
            # Stopping mid-outage: close() counts the batch in flight as dropped.
            return not self._stopping

    def _commit(self, batch: _Batch, result: WriteResult) -> None:
        now_ns = self._clock_ns()
        latencies: list[float] = []
        with self._cond:
            sent = len(batch.points)
            rejected = min(result.rejected, sent)
            self._written += sent - rejected
            self._rejected += rejected
            self._finished += sent
            self._in_flight = 0
            self._last_success_ns = now_ns
            self._last_error = None
            if self._failing_since is not None:
                log.info(
                    "InfluxDB writes recovered after %d failed attempts over %.1f s",
                    self._failed_attempts,
                    time.monotonic() - self._failing_since,
                )
                self._failing_since = None
                self._failed_attempts = 0
            if result.message is not None:
                self._write_errors += 1
                self._log_rejection(rejected, sent, result.message)
            for chunk, count in batch.pieces:
                chunk.unfinished -= count
                if chunk.unfinished == 0 and chunk.scraped_at_ns is not None:
                    latencies.append((now_ns - chunk.scraped_at_ns) / 1e9)
            if self._overflowing and not self._queued:
                log.warning(
                    "write buffer drained; %d points were dropped while it was full",
                    self._dropped_this_episode,
                )
                self._overflowing = False
                self._dropped_this_episode = 0
            self._cond.notify_all()
        observer = self.latency_observer
        if observer is not None:
            for seconds in latencies:
                observer(seconds)

    def _log_rejection(self, rejected: int, sent: int, message: str) -> None:
        # A type conflict repeats on every batch until someone fixes the schema: one line per 10 s is enough.
        now = time.monotonic()
        if self._last_reject_log is not None and now - self._last_reject_log < _REJECT_LOG_EVERY_SECONDS:
            self._rejects_not_logged += 1
            return
        suppressed = f" ({self._rejects_not_logged} similar not logged)" if self._rejects_not_logged else ""
        log.error("InfluxDB refused %d of %d points for good: %s%s", rejected, sent, message, suppressed)
        self._last_reject_log = now
        self._rejects_not_logged = 0

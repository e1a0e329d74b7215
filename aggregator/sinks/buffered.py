"""The InfluxDB writer without a spool: pending points wait in a bounded in-memory queue.

``write`` only enqueues (it never touches the network); the shared writer core (``writer.py``) sends
batches in order from its thread, retries transient failures and counts refusals. When the queue is full
the oldest queued points are dropped, counted, and logged once per overflow episode: nothing is lost
without a count and a log line. What is still queued at shutdown is counted as dropped.

Usage::

    backend = InfluxV1Backend(requests.Session(), url="http://127.0.0.1:8086", database="kpulse")
    writer = BufferedWriter(backend, batch_points=5000, flush_interval_seconds=1.0, max_points=2_000_000)
    writer.write(points, scraped_at_ns=batch.scraped_at_ns)
    writer.flush(timeout_seconds=5)   # True when everything accepted so far was written or failed for good
    writer.close()
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aggregator.points import Point
from aggregator.sinks.writer import (
    Backend,
    Batch,
    BatchWriter,
    MonitoredSink,
    Taken,
    WriteResult,
    WriterStats,
)

# The app, the routes and /metrics import the writer's types from here.
__all__ = ["Backend", "BufferedWriter", "MemoryQueue", "MonitoredSink", "WriteResult", "WriterStats"]

log = logging.getLogger(__name__)


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
class _QueuedBatch(Batch):
    pieces: list[tuple[_Chunk, int]] = field(default_factory=list)
    """How many points of the batch came from each write."""


class MemoryQueue:
    """A ``PendingStore`` in memory: at most ``max_points`` queued, the oldest dropped beyond that."""

    where = "in memory"

    def __init__(self, max_points: int) -> None:
        self.max_points = max_points
        self._queue: deque[_Chunk] = deque()
        self._queued = 0
        self._in_flight = 0
        self._overflowing = False
        self._dropped_this_episode = 0

    @property
    def pending_points(self) -> int:
        """Points queued, not counting the batch in flight."""
        return self._queued

    def append(self, points: Sequence[Point], scraped_at_ns: int | None) -> int:
        """Queue one write's points; returns how many of the oldest were dropped to stay in bounds."""
        self._queue.append(_Chunk(tuple(points), scraped_at_ns, unfinished=len(points)))
        self._queued += len(points)
        if self._queued <= self.max_points:
            return 0
        return self._drop_oldest(self._queued - self.max_points)

    def _drop_oldest(self, count: int) -> int:
        remaining = count
        while remaining and self._queue:
            chunk = self._queue[0]
            taken = min(len(chunk.points) - chunk.start, remaining)
            chunk.start += taken
            chunk.unfinished -= taken
            remaining -= taken
            if chunk.start == len(chunk.points):
                self._queue.popleft()
        dropped = count - remaining
        self._queued -= dropped
        self._dropped_this_episode += dropped
        if not self._overflowing:
            self._overflowing = True
            log.error(
                "write buffer full (%d points, InfluxDB slower than ingest or unreachable): "
                "dropping the oldest points until it drains",
                self.max_points,
            )
        return dropped

    def take(self, max_points: int) -> Taken:
        """The oldest queued points, at most ``max_points``, across as many writes as it takes."""
        points: list[Point] = []
        pieces: list[tuple[_Chunk, int]] = []
        while self._queue and len(points) < max_points:
            chunk = self._queue[0]
            end = min(len(chunk.points), chunk.start + max_points - len(points))
            points.extend(chunk.points[chunk.start : end])
            pieces.append((chunk, end - chunk.start))
            chunk.start = end
            if end == len(chunk.points):
                self._queue.popleft()
        self._queued -= len(points)
        self._in_flight = len(points)
        return Taken(_QueuedBatch(points, pieces) if points else None)

    def settle(self, batch: Batch) -> list[int]:
        """Count the batch's points off their writes; a write whose last point this was has a latency."""
        assert isinstance(batch, _QueuedBatch)
        finished_writes = []
        for chunk, count in batch.pieces:
            chunk.unfinished -= count
            if chunk.unfinished == 0 and chunk.scraped_at_ns is not None:
                finished_writes.append(chunk.scraped_at_ns)
        self._in_flight = 0
        if self._overflowing and not self._queued:
            log.warning(
                "write buffer drained; %d points were dropped while it was full", self._dropped_this_episode
            )
            self._overflowing = False
            self._dropped_this_episode = 0
        return finished_writes

    def close(self, *, writer_stopped: bool) -> int:
        """Memory does not outlive the process: what is queued (and in flight, if stuck) is dropped."""
        lost = self._queued
        if writer_stopped:
            lost += self._in_flight
            self._in_flight = 0
        if lost:
            log.error("shut down with %d points not written to InfluxDB (counted as dropped)", lost)
        self._queued = 0
        self._queue.clear()
        return lost

    def describe(self, stats: WriterStats) -> WriterStats:
        """``stats`` with the queue's bound."""
        return dataclasses.replace(stats, buffer_capacity=self.max_points)


class BufferedWriter(BatchWriter[MemoryQueue]):
    """A ``Sink`` that buffers up to ``max_points`` and writes them to ``backend`` from a background thread.

    The queue holds at most ``max_points``; the batch in flight (at most ``batch_points``) comes on top.
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
        if max_points < 1:
            raise ValueError("batch_points and max_points must be at least 1")
        super().__init__(
            backend,
            MemoryQueue(max_points),
            batch_points=batch_points,
            flush_interval_seconds=flush_interval_seconds,
            retry_initial_seconds=retry_initial_seconds,
            retry_max_seconds=retry_max_seconds,
            clock_ns=clock_ns,
            latency_observer=latency_observer,
            thread_name="kpulse-influx-writer",
        )

    def write(self, points: Sequence[Point], *, scraped_at_ns: int | None = None) -> None:
        """Queue ``points`` (never blocks on the network); ``scraped_at_ns`` is their scrape time in ns."""
        if not points:
            return
        with self._lock:
            if self._accept(len(points)):
                self._count_dropped(self._store.append(points, scraped_at_ns))
                self._pending_grew()

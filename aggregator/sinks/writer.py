"""The writer core both InfluxDB writers share: one background thread drains a store of pending points.

Where pending points live is the store's business (``PendingStore``: a bounded memory queue in
``buffered.py``, fsynced disk segments in ``spool.py``); everything else is here, once: batching (a batch
goes when ``batch_points`` are pending, when the oldest pending point has waited ``flush_interval_seconds``,
or when someone flushes), retrying transient failures with capped exponential backoff so that nothing
overtakes a failing batch, counting what InfluxDB refused for good (logged with its message, at most once
per 10 s), ``flush``/``close``, the counters behind ``/metrics`` and the scrape-to-store latency.

Usage (what ``BufferedWriter`` and ``SpooledWriter`` do)::

    class MyWriter(BatchWriter):
        def write(self, points, *, scraped_at_ns=None):
            with self._lock:
                if self._accept(len(points)):
                    self._store.append(points, scraped_at_ns)
                    self._pending_grew()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar, runtime_checkable

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


@dataclass(slots=True)
class Batch:
    """Points taken from a store to be written in one request (stores subclass it for their bookkeeping)."""

    points: list[Point]


@dataclass(slots=True)
class Taken:
    """What ``PendingStore.take`` found: the next batch (``None``: nothing readable) and points lost."""

    batch: Batch | None
    lost: int = 0
    """Points found unreadable on the way (a corrupt spool record); they count as dropped."""


class PendingStore(Protocol):
    """Where accepted points wait for InfluxDB. Every method is called with the writer's lock held."""

    where: str
    """Where the points are kept, for log lines ("in memory", "in the spool")."""

    @property
    def pending_points(self) -> int:
        """Points ready to be taken into a batch (not those in flight)."""
        ...

    def take(self, max_points: int) -> Taken:
        """The oldest pending points, about ``max_points`` of them; may raise ``OSError``."""
        ...

    def settle(self, batch: Batch) -> list[int]:
        """Forget ``batch`` (stored or refused); returns the scrape times (ns) of the writes it finished."""
        ...

    def close(self, *, writer_stopped: bool) -> int:
        """The writer stops (its thread too, unless a request hangs): how many points are lost (dropped)."""
        ...

    def describe(self, stats: WriterStats) -> WriterStats:
        """``stats`` with the store's own fields filled in."""
        ...


S = TypeVar("S", bound=PendingStore)


class BatchWriter(Generic[S]):
    """A ``MonitoredSink`` core: writes what ``store`` holds to ``backend`` from one background thread.

    Subclasses implement ``write``: under ``self._lock`` they call ``_accept``, put the points into the store
    and call ``_pending_grew``. ``latency_observer`` receives, in seconds, the time from a write's
    ``scraped_at_ns`` to the moment its last point was stored.
    """

    def __init__(
        self,
        backend: Backend,
        store: S,
        *,
        batch_points: int,
        flush_interval_seconds: float,
        retry_initial_seconds: float,
        retry_max_seconds: float,
        clock_ns: Callable[[], int],
        latency_observer: Callable[[float], None] | None,
        thread_name: str,
        accepted: int = 0,
    ) -> None:
        if batch_points < 1:
            raise ValueError("batch_points must be at least 1")
        self._backend = backend
        self._store = store
        self._batch_points = batch_points
        self._interval = flush_interval_seconds
        self._retry_initial = retry_initial_seconds
        self._retry_max = retry_max_seconds
        self._clock_ns = clock_ns
        self.latency_observer = latency_observer

        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._flush_waiters = 0
        self._closed = False
        self._stopping = False
        # Recovered points (a spool from an earlier run) are overdue: send them at once.
        self._oldest_pending_at: float | None = (
            time.monotonic() - flush_interval_seconds if accepted else None
        )

        # Monotonic totals: a flush waits until everything accepted before it has finished one way or another.
        self._accepted = accepted
        self._finished = 0
        self._written = 0
        self._rejected = 0
        self._dropped = 0
        self._write_errors = 0
        self._last_success_ns: int | None = None
        self._last_error: str | None = None

        self._failing_since: float | None = None
        self._failed_attempts = 0
        self._last_reject_log: float | None = None
        self._rejects_not_logged = 0
        self._dropped_after_close_logged = False

        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        self._thread.start()

    # -- the Sink protocol ---------------------------------------------------------------------------

    def flush(self, timeout_seconds: float | None = None) -> bool:
        """Write what is pending now; ``True`` when all of it was written or failed for good in time (s)."""
        with self._cond:
            target = self._accepted
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: self._finished >= target, timeout=timeout_seconds)
            finally:
                self._flush_waiters -= 1

    def close(self, timeout_seconds: float = 10.0) -> None:
        """Drain for up to ``timeout_seconds``, then stop; the store decides what becomes of the rest."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
        self._closing()
        self.flush(timeout_seconds)
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        # A request in flight ends by the backend's own timeout; do not wait for it forever.
        self._thread.join(timeout=max(1.0, timeout_seconds))
        with self._cond:
            self._count_dropped(self._store.close(writer_stopped=not self._thread.is_alive()))
            self._cond.notify_all()
        self._backend.close()

    # -- observation ---------------------------------------------------------------------------------

    def stats(self) -> WriterStats:
        """The writer's counters now."""
        with self._cond:
            return self._store.describe(
                WriterStats(
                    points_accepted=self._accepted,
                    points_written=self._written,
                    points_rejected=self._rejected,
                    points_dropped=self._dropped,
                    write_errors=self._write_errors,
                    buffer_depth=self._accepted - self._finished,
                    last_success_ns=self._last_success_ns,
                    last_error=self._last_error,
                )
            )

    def ping(self) -> None:
        """Ask InfluxDB whether it is up; raises ``SinkError`` when it is not."""
        self._backend.ping()

    # -- for subclasses, under the lock --------------------------------------------------------------

    def _closing(self) -> None:
        """Called once by ``close`` (lock not held) before draining: stop feeding the store."""

    def _accept(self, count: int) -> bool:
        """Count ``count`` points as accepted; ``False`` (and counted as dropped) once closed."""
        self._accepted += count
        if not self._closed:
            return True
        self._count_dropped(count)
        if not self._dropped_after_close_logged:
            self._dropped_after_close_logged = True
            log.error("points written after the InfluxDB writer was closed are dropped (counted)")
        return False

    def _count_dropped(self, count: int) -> None:
        self._dropped += count
        self._finished += count

    def _pending_grew(self) -> None:
        """The store holds more pending points: wake the writer thread when they are due."""
        if self._oldest_pending_at is None:
            # The writer sleeps without a deadline while nothing is pending: give it one now.
            self._oldest_pending_at = time.monotonic()
            self._cond.notify_all()
        elif self._store.pending_points >= self._batch_points:
            self._cond.notify_all()

    # -- the writer thread ---------------------------------------------------------------------------

    def _due(self) -> bool:
        pending = self._store.pending_points
        if not pending:
            return False
        if pending >= self._batch_points or self._flush_waiters or self._closed:
            return True
        return (
            self._oldest_pending_at is not None
            and time.monotonic() >= self._oldest_pending_at + self._interval
        )

    def _next_batch(self) -> Batch | None:
        with self._cond:
            while not self._stopping:
                if self._due():
                    try:
                        taken = self._store.take(self._batch_points)
                    except OSError as exc:
                        log.error("cannot read pending points %s: %s", self._store.where, exc)
                        self._cond.wait(self._retry_max)
                        continue
                    self._count_dropped(taken.lost)
                    # Points left behind by a full batch keep their old arrival time, so they follow at once.
                    if not self._store.pending_points:
                        self._oldest_pending_at = None
                    if taken.batch is not None:
                        return taken.batch
                    continue
                if self._oldest_pending_at is None and self._store.pending_points:
                    self._oldest_pending_at = time.monotonic()
                timeout = None
                if self._oldest_pending_at is not None:
                    timeout = max(0.0, self._oldest_pending_at + self._interval - time.monotonic())
                self._cond.wait(timeout)
            return None

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._deliver(batch)

    def _deliver(self, batch: Batch) -> None:
        delay = self._retry_initial
        while True:
            try:
                result = self._backend.write_batch(batch.points)
            except SinkError as exc:
                if not self._wait_to_retry(exc, delay):
                    return  # stopping mid-outage: the store's close() decides what becomes of the batch
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
                log.warning(
                    "InfluxDB write failed, keeping points %s and retrying with backoff: %s",
                    self._store.where,
                    exc,
                )
            else:
                log.debug("InfluxDB write failed again (attempt %d): %s", self._failed_attempts, exc)
            self._cond.wait_for(lambda: self._stopping, timeout=delay)
            return not self._stopping

    def _commit(self, batch: Batch, result: WriteResult) -> None:
        now_ns = self._clock_ns()
        with self._cond:
            sent = len(batch.points)
            rejected = min(result.rejected, sent)
            self._written += sent - rejected
            self._rejected += rejected
            self._finished += sent
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
            finished_writes = self._store.settle(batch)
            self._cond.notify_all()
        observer = self.latency_observer
        if observer is not None:
            for scraped_at_ns in finished_writes:
                observer((now_ns - scraped_at_ns) / 1e9)

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

"""An in-memory sink for tests and benchmarks: it keeps what it is given, and ``flush`` makes it "written".

Usage::

    sink = MemorySink()
    sink.write(points)
    sink.flush()
    assert sink.points == points
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from aggregator.points import Point
from aggregator.sinks.writer import WriterStats


class MemorySink:
    """Keeps points in a list; ``write`` queues them and only ``flush``/``close`` store them in ``points``.

    Tests flush explicitly instead of sleeping, as they would with the real writer. ``latency_observer``
    receives each write's scrape-to-store latency in seconds when it is stored.
    """

    def __init__(
        self,
        *,
        clock_ns: Callable[[], int] = time.time_ns,
        latency_observer: Callable[[float], None] | None = None,
    ) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[tuple[Point, ...], int | None]] = []
        self._points: list[Point] = []
        self._accepted = 0
        self._last_success_ns: int | None = None
        self._clock_ns = clock_ns
        self.latency_observer = latency_observer
        self.closed = False

    @property
    def points(self) -> list[Point]:
        """Every point stored so far, in write order (a copy)."""
        with self._lock:
            return list(self._points)

    @property
    def pending(self) -> int:
        """Points written but not flushed yet."""
        with self._lock:
            return sum(len(points) for points, _ in self._pending)

    def write(self, points: Sequence[Point], *, scraped_at_ns: int | None = None) -> None:
        """Queue ``points``; ``scraped_at_ns`` is their scrape time in ns (for the latency observer)."""
        with self._lock:
            self._pending.append((tuple(points), scraped_at_ns))
            self._accepted += len(points)

    def flush(self, timeout_seconds: float | None = None) -> bool:
        """Store everything queued; always ``True`` (nothing can fail in memory)."""
        now_ns = self._clock_ns()
        with self._lock:
            pending, self._pending = self._pending, []
            for points, _ in pending:
                self._points.extend(points)
            if pending:
                self._last_success_ns = now_ns
        observer = self.latency_observer
        if observer is not None:
            for _, scraped_at_ns in pending:
                if scraped_at_ns is not None:
                    observer((now_ns - scraped_at_ns) / 1e9)
        return True

    def close(self) -> None:
        """Store what is queued; the points stay readable."""
        self.flush()
        self.closed = True

    def clear(self) -> None:
        """Forget stored points (benchmarks reuse one sink)."""
        with self._lock:
            self._points.clear()

    def stats(self) -> WriterStats:
        """Counters in the same shape as the InfluxDB writer's."""
        with self._lock:
            depth = sum(len(points) for points, _ in self._pending)
            return WriterStats(
                points_accepted=self._accepted,
                points_written=self._accepted - depth,
                buffer_depth=depth,
                last_success_ns=self._last_success_ns,
            )

    def ping(self) -> None:
        """Memory is always reachable."""

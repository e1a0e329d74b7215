"""A scripted InfluxDB backend and the settings the writer tests share (memory queue and disk spool)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence

from aggregator.errors import SinkError
from aggregator.points import Point
from aggregator.sinks.buffered import BufferedWriter
from aggregator.sinks.spool import SpooledWriter
from aggregator.sinks.writer import WriteResult

FAST_RETRIES: dict[str, object] = {
    "batch_points": 10,
    "flush_interval_seconds": 60.0,
    "retry_initial_seconds": 0.01,
    "retry_max_seconds": 0.04,
}
"""Writer settings for tests: small batches, no timed flush unless asked, retries within milliseconds."""


class ScriptedBackend:
    """Records every batch; each call takes the next scripted outcome (default: stored)."""

    def __init__(self) -> None:
        self.calls: list[list[Point]] = []
        self.call_times: list[float] = []
        self.stored: list[Point] = []
        self.script: list[Callable[[Sequence[Point]], WriteResult]] = []
        self.down = False
        self.gate = threading.Event()
        self.gate.set()
        self.closed = False
        self._lock = threading.Lock()

    def write_batch(self, points: Sequence[Point]) -> WriteResult:
        self.gate.wait()
        with self._lock:
            self.calls.append(list(points))
            self.call_times.append(time.monotonic())
            if self.down:
                raise SinkError("connection refused")
            step = self.script.pop(0) if self.script else None
        result = step(points) if step is not None else WriteResult(len(points))
        if result.rejected < len(points):
            with self._lock:
                self.stored.extend(points[: len(points) - result.rejected])
        return result

    def ping(self) -> None:
        if self.down:
            raise SinkError("connection refused")

    def close(self) -> None:
        self.closed = True


def numbered_points(count: int, start: int = 0) -> list[Point]:
    """``count`` distinct points of one measurement, numbered from ``start``."""
    return [Point("m", {"i": str(i)}, {"v": float(i)}, i) for i in range(start, start + count)]


def release(backend: ScriptedBackend, writers: Iterable[BufferedWriter | SpooledWriter]) -> None:
    """Bring ``backend`` back and close every writer (each within 5 s), whatever a test left behind."""
    backend.down = False
    backend.gate.set()
    for writer in writers:
        writer.close(timeout_seconds=5)

"""The in-memory sink: written points appear only on flush, with the same counters as the real writer."""

from __future__ import annotations

from aggregator.points import Point
from aggregator.sinks import Sink
from aggregator.sinks.buffered import MonitoredSink
from aggregator.sinks.memory import MemorySink


def _points(count: int) -> list[Point]:
    return [Point("m", {"i": str(i)}, {"v": float(i)}, i) for i in range(count)]


def test_points_are_stored_on_flush_in_write_order() -> None:
    sink = MemorySink(clock_ns=lambda: 42)
    sink.write(_points(2))
    sink.write(_points(3)[2:])

    assert sink.points == []
    assert sink.pending == 3
    assert sink.stats().buffer_depth == 3

    assert sink.flush()
    assert sink.points == _points(3)
    stats = sink.stats()
    assert (stats.points_accepted, stats.points_written, stats.buffer_depth, stats.last_success_ns) == (
        3,
        3,
        0,
        42,
    )


def test_latency_is_observed_per_write_with_a_scrape_time() -> None:
    observed: list[float] = []
    sink = MemorySink(clock_ns=lambda: 5_000_000_000, latency_observer=observed.append)
    sink.write(_points(1), scraped_at_ns=2_000_000_000)
    sink.write(_points(1))

    sink.flush()

    assert observed == [3.0]


def test_close_stores_what_is_pending_and_clear_forgets() -> None:
    sink = MemorySink()
    sink.write(_points(2))
    sink.close()
    assert sink.closed
    assert len(sink.points) == 2
    sink.clear()
    assert sink.points == []


def test_it_satisfies_both_sink_protocols() -> None:
    sink: Sink = MemorySink()
    assert isinstance(sink, MonitoredSink)

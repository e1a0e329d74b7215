"""The shared writer core, run through both writers (memory queue and disk spool) with a scripted backend:
timing, retry order and backoff, refusals, a backend bug, latency, flush timeouts, writes after close."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from aggregator.errors import SinkError
from aggregator.points import Point
from aggregator.sinks.buffered import BufferedWriter
from aggregator.sinks.spool import Spool, SpooledWriter
from aggregator.sinks.writer import WriteResult
from tests.aggregator.sinks.scripted import FAST_RETRIES, ScriptedBackend, numbered_points, release
from tests.helpers import wait_until


def _fail(points: Sequence[Point]) -> WriteResult:
    raise SinkError("HTTP 503: busy")


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture(params=["memory", "spool"])
def make_writer(
    request: pytest.FixtureRequest, backend: ScriptedBackend, tmp_path: Path
) -> Iterator[Callable[..., BufferedWriter | SpooledWriter]]:
    writers: list[BufferedWriter | SpooledWriter] = []

    def make(**options: object) -> BufferedWriter | SpooledWriter:
        settings = {**FAST_RETRIES, **options}
        writer: BufferedWriter | SpooledWriter
        if request.param == "memory":
            writer = BufferedWriter(backend, max_points=1000, **settings)  # type: ignore[arg-type]
        else:
            spool = Spool(tmp_path / f"spool{len(writers)}", max_bytes=1 << 20)
            writer = SpooledWriter(backend, spool, **settings)  # type: ignore[arg-type]
        writers.append(writer)
        return writer

    yield make
    release(backend, writers)


def test_points_are_written_after_the_flush_interval_without_a_flush_call(
    backend: ScriptedBackend, make_writer: Callable[..., BufferedWriter | SpooledWriter]
) -> None:
    writer = make_writer(flush_interval_seconds=0.05)
    writer.write(numbered_points(3))

    wait_until(lambda: len(backend.stored) == 3, 5, "the interval did not flush")
    assert writer.stats().points_written == 3


def test_a_full_batch_is_written_at_once_without_waiting_for_the_interval(
    backend: ScriptedBackend, make_writer: Callable[..., BufferedWriter | SpooledWriter]
) -> None:
    writer = make_writer(batch_points=10, flush_interval_seconds=3600)
    for start in (0, 5, 10):
        writer.write(numbered_points(5 if start < 10 else 2, start))

    wait_until(lambda: len(backend.stored) == 10, 5, "a full batch was not written")
    assert backend.stored == numbered_points(10)
    assert writer.stats().buffer_depth == 2


def test_transient_failures_are_retried_with_capped_backoff_and_keep_the_order(
    backend: ScriptedBackend, make_writer: Callable[..., BufferedWriter | SpooledWriter]
) -> None:
    backend.script = [_fail, _fail, _fail, _fail]
    writer = make_writer(batch_points=5, retry_initial_seconds=0.02, retry_max_seconds=0.05)
    points = numbered_points(12)
    for start in range(0, 12, 5):
        writer.write(points[start : start + 5])

    assert writer.flush(timeout_seconds=10)

    assert backend.stored == points
    assert [len(call) for call in backend.calls] == [5, 5, 5, 5, 5, 5, 2]
    assert all(call == points[:5] for call in backend.calls[:5])  # nothing overtook the failing batch
    gaps = [b - a for a, b in zip(backend.call_times, backend.call_times[1:5], strict=False)]
    assert [
        round(gap, 2) >= expected for gap, expected in zip(gaps, [0.02, 0.04, 0.05, 0.05], strict=True)
    ] == [True] * 4
    stats = writer.stats()
    assert (stats.write_errors, stats.points_written, stats.last_error) == (4, 12, None)


def test_refused_points_are_counted_logged_and_not_retried(
    backend: ScriptedBackend,
    make_writer: Callable[..., BufferedWriter | SpooledWriter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend.script = [
        lambda pts: WriteResult(len(pts), 2, "HTTP 400: partial write: field type conflict dropped=2")
    ]
    writer = make_writer()

    with caplog.at_level(logging.ERROR, logger="aggregator.sinks"):
        writer.write(numbered_points(6))
        assert writer.flush(timeout_seconds=5)

    assert len(backend.calls) == 1
    stats = writer.stats()
    assert (stats.points_written, stats.points_rejected, stats.write_errors) == (4, 2, 1)
    assert any("field type conflict" in r.getMessage() and "2 of 6" in r.getMessage() for r in caplog.records)


def test_a_bug_in_the_backend_loses_that_batch_only_and_the_writer_goes_on(
    backend: ScriptedBackend,
    make_writer: Callable[..., BufferedWriter | SpooledWriter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def explode(points: Sequence[Point]) -> WriteResult:
        raise RuntimeError("bug")

    backend.script = [explode]
    writer = make_writer(batch_points=5)
    with caplog.at_level(logging.ERROR, logger="aggregator.sinks"):
        writer.write(numbered_points(5))
        writer.write(numbered_points(5, start=5))
        assert writer.flush(timeout_seconds=5)

    assert backend.stored == numbered_points(5, start=5)
    assert writer.stats().points_rejected == 5
    assert any("failed unexpectedly" in r.getMessage() for r in caplog.records)


def test_latency_is_observed_once_per_write_that_carries_a_scrape_time(
    backend: ScriptedBackend, make_writer: Callable[..., BufferedWriter | SpooledWriter]
) -> None:
    observed: list[float] = []
    now = [10_000_000_000]
    writer = make_writer(batch_points=4, clock_ns=lambda: now[0], latency_observer=observed.append)
    backend.gate.clear()
    writer.write(numbered_points(2), scraped_at_ns=7_000_000_000)
    writer.write(numbered_points(1), scraped_at_ns=None)  # rollups from a tick carry no scrape time
    writer.write(numbered_points(1), scraped_at_ns=9_500_000_000)
    backend.gate.set()

    assert writer.flush(timeout_seconds=5)
    assert observed == [3.0, 0.5]


def test_flush_times_out_while_influxdb_is_down_and_reports_the_outage(
    backend: ScriptedBackend, make_writer: Callable[..., BufferedWriter | SpooledWriter]
) -> None:
    backend.down = True
    writer = make_writer(batch_points=5)
    writer.write(numbered_points(12))

    assert not writer.flush(timeout_seconds=0.1)
    stats = writer.stats()
    assert (stats.points_written, stats.buffer_depth, stats.last_error) == (0, 12, "connection refused")
    assert stats.write_errors >= 1

    backend.down = False
    assert writer.flush(timeout_seconds=5)
    assert backend.stored == numbered_points(12)
    assert writer.stats().last_error is None


def test_writes_after_close_are_dropped_counted_and_logged_once(
    backend: ScriptedBackend,
    make_writer: Callable[..., BufferedWriter | SpooledWriter],
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer = make_writer()
    writer.write(numbered_points(2))
    writer.close()
    with caplog.at_level(logging.ERROR, logger="aggregator.sinks"):
        writer.write(numbered_points(3))
        writer.write(numbered_points(4))

    stats = writer.stats()
    assert (stats.points_accepted, stats.points_written, stats.points_dropped) == (9, 2, 7)
    assert len([r for r in caplog.records if "after the InfluxDB writer was closed" in r.getMessage()]) == 1
    assert writer.flush(timeout_seconds=0)  # everything accepted has an outcome
    assert backend.closed


def test_ping_asks_the_backend(
    backend: ScriptedBackend, make_writer: Callable[..., BufferedWriter | SpooledWriter]
) -> None:
    writer = make_writer()
    writer.ping()
    backend.down = True
    with pytest.raises(SinkError):
        writer.ping()

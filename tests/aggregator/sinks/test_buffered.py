"""The memory-queue writer with a scripted backend: batch splitting, overflow, latency of split writes,
shutdown. What it shares with the spooled writer is tested for both in ``test_writer.py``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from aggregator.sinks.buffered import BufferedWriter, WriterStats
from tests.aggregator.sinks.scripted import FAST_RETRIES, ScriptedBackend, numbered_points, release
from tests.helpers import wait_until


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
def make_writer(backend: ScriptedBackend) -> Iterator[Callable[..., BufferedWriter]]:
    writers: list[BufferedWriter] = []

    def make(**options: object) -> BufferedWriter:
        settings = {**FAST_RETRIES, "max_points": 1000, **options}
        writer = BufferedWriter(backend, **settings)  # type: ignore[arg-type]
        writers.append(writer)
        return writer

    yield make
    release(backend, writers)


def test_write_only_queues_and_flush_writes_in_batches_in_order(
    backend: ScriptedBackend, make_writer: Callable[..., BufferedWriter]
) -> None:
    backend.gate.clear()  # the backend blocks: write() must return anyway
    writer = make_writer(batch_points=10)
    points = numbered_points(25)
    writer.write(points[:3])
    writer.write(points[3:])
    assert writer.stats().points_accepted == 25

    backend.gate.set()
    assert writer.flush(timeout_seconds=5)

    assert [len(call) for call in backend.calls] == [10, 10, 5]
    assert backend.stored == points
    assert writer.stats() == WriterStats(
        points_accepted=25,
        points_written=25,
        buffer_capacity=1000,
        last_success_ns=writer.stats().last_success_ns,
    )


def test_overflow_drops_the_oldest_queued_points_and_logs_once_per_episode(
    backend: ScriptedBackend, make_writer: Callable[..., BufferedWriter], caplog: pytest.LogCaptureFixture
) -> None:
    backend.down = True
    writer = make_writer(batch_points=5, max_points=10)
    points = numbered_points(40)
    writer.write(points[:5])
    wait_until(lambda: writer.stats().write_errors >= 1, 5, "the first batch was not attempted")

    with caplog.at_level(logging.WARNING, logger="aggregator.sinks"):
        for start in range(5, 30, 5):
            writer.write(points[start : start + 5])
        assert writer.stats().points_dropped == 15
        assert writer.stats().buffer_depth == 15  # 5 in flight + 10 queued
        assert writer.stats().buffer_fill_ratio == 1.0
        backend.down = False
        assert writer.flush(timeout_seconds=5)
        # A second episode is logged again.
        backend.down = True
        writer.write(points[30:35])
        wait_until(lambda: backend.calls[-1] == points[30:35], 5, "the batch was not attempted")
        writer.write(points[35:40])
        writer.write(numbered_points(10, start=100))
        backend.down = False
        assert writer.flush(timeout_seconds=5)

    assert backend.stored[:15] == points[:5] + points[20:30]
    assert writer.stats().points_dropped == 20
    full = [r for r in caplog.records if "write buffer full" in r.getMessage()]
    drained = [r for r in caplog.records if "write buffer drained" in r.getMessage()]
    assert (len(full), len(drained)) == (2, 2)
    assert "15 points were dropped" in drained[0].getMessage()


def test_one_write_larger_than_the_buffer_keeps_its_newestpoints(
    backend: ScriptedBackend, make_writer: Callable[..., BufferedWriter]
) -> None:
    backend.gate.clear()
    writer = make_writer(batch_points=100, max_points=10)
    writer.write(numbered_points(25))
    backend.gate.set()

    assert writer.flush(timeout_seconds=5)
    assert backend.stored == numbered_points(10, start=15)
    assert writer.stats().points_dropped == 15


def test_latency_is_observed_once_per_write_when_its_last_point_is_stored(
    backend: ScriptedBackend, make_writer: Callable[..., BufferedWriter]
) -> None:
    observed: list[float] = []
    now = [10_000_000_000]
    writer = make_writer(batch_points=4, clock_ns=lambda: now[0], latency_observer=observed.append)
    backend.gate.clear()
    writer.write(numbered_points(6), scraped_at_ns=7_000_000_000)  # spans two batches
    writer.write(numbered_points(1), scraped_at_ns=None)  # rollups from a tick carry no scrape time
    writer.write(numbered_points(1), scraped_at_ns=9_500_000_000)
    backend.gate.set()

    assert writer.flush(timeout_seconds=5)
    assert observed == [3.0, 0.5]


def test_flush_times_out_while_influxdb_is_down_and_close_counts_what_is_left(
    backend: ScriptedBackend, make_writer: Callable[..., BufferedWriter], caplog: pytest.LogCaptureFixture
) -> None:
    backend.down = True
    writer = make_writer(batch_points=5)
    writer.write(numbered_points(12))

    assert not writer.flush(timeout_seconds=0.1)
    with caplog.at_level(logging.ERROR, logger="aggregator.sinks"):
        writer.close(timeout_seconds=0.2)
        writer.write(numbered_points(3))

    stats = writer.stats()
    assert (stats.points_written, stats.points_dropped, stats.buffer_depth) == (0, 15, 0)
    assert stats.last_error == "connection refused"
    assert backend.closed
    messages = [r.getMessage() for r in caplog.records]
    assert any("12 points not written" in m for m in messages)
    assert any("after the InfluxDB writer was closed" in m for m in messages)
    assert writer.flush(timeout_seconds=0)  # everything accepted has an outcome now


def test_close_drains_what_is_queued(
    backend: ScriptedBackend, make_writer: Callable[..., BufferedWriter]
) -> None:
    writer = make_writer(flush_interval_seconds=3600)
    writer.write(numbered_points(7))

    writer.close()

    assert backend.stored == numbered_points(7)
    assert writer.stats().points_dropped == 0
    assert backend.closed

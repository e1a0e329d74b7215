"""The disk spool and its writer: durable before ack, group commit, in-order replay across restarts, bound,
torn records, disk errors."""

from __future__ import annotations

import errno
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from aggregator.api import create_app
from aggregator.api.app import build_sink
from aggregator.metrics import AggregatorMetrics
from aggregator.points import Point
from aggregator.settings import AggregatorSettings
from aggregator.sinks.spool import Spool, SpooledWriter
from tests.aggregator.servers import serve
from tests.aggregator.sinks.scripted import FAST_RETRIES, ScriptedBackend, release
from tests.helpers import wait_until

MAX_BYTES = 512 * 1024


class GatedSync:
    """The real ``os.fdatasync``, counted, and held until the test releases it (one release per call).

    ``fail_next`` makes calls raise ``EIO`` instead, as a failing disk would.
    """

    def __init__(self, *, held: bool = True) -> None:
        self.calls = 0
        self.fail_next = 0
        self._held = held
        self._permits = threading.Semaphore(0)
        self._lock = threading.Lock()

    def __call__(self, descriptor: int) -> None:
        with self._lock:
            self.calls += 1
            fail = self.fail_next > 0
            self.fail_next -= 1 if fail else 0
        if self._held:
            assert self._permits.acquire(timeout=30), "a held fdatasync was never released"
        if fail:
            raise OSError(errno.EIO, "Input/output error (test)")
        os.fdatasync(descriptor)

    def release(self, count: int = 1) -> None:
        self._permits.release(count)

    def let_go(self) -> None:
        """Stop holding: every later call goes through at once."""
        self._held = False
        self._permits.release(1000)


class Writes:
    """Blocking ``write`` calls, each in a thread of its own; records which have returned."""

    def __init__(self, writer: SpooledWriter) -> None:
        self._writer = writer
        self.returned: list[int] = []
        self._threads: list[threading.Thread] = []

    def start(self, index: int, points: list[Point]) -> None:
        def write() -> None:
            self._writer.write(points)
            self.returned.append(index)

        thread = threading.Thread(target=write, daemon=True)
        thread.start()
        self._threads.append(thread)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(10)


def _points(count: int, start: int = 0) -> list[Point]:
    return [
        Point("m", {"i": str(i), "node": "n-with a space,comma"}, {"v": float(i), "w": 0.5}, i)
        for i in range(start, start + count)
    ]


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
def make_writer(backend: ScriptedBackend, tmp_path: Path) -> Iterator[Callable[..., SpooledWriter]]:
    writers: list[SpooledWriter] = []

    def make(
        *, max_bytes: int = MAX_BYTES, fdatasync: Callable[[int], None] = os.fdatasync, **options: object
    ) -> SpooledWriter:
        spool = Spool(tmp_path / "spool", max_bytes=max_bytes, fdatasync=fdatasync)
        writer = SpooledWriter(backend, spool, **{**FAST_RETRIES, **options})  # type: ignore[arg-type]
        writers.append(writer)
        return writer

    yield make
    release(backend, writers)


def test_write_is_on_disk_when_it_returns_and_flush_writes_in_order(
    backend: ScriptedBackend, make_writer: Callable[..., SpooledWriter], tmp_path: Path
) -> None:
    backend.gate.clear()
    writer = make_writer(batch_points=10)
    points = _points(25)
    writer.write(points[:3], scraped_at_ns=1)
    writer.write(points[3:])

    # Nothing reached InfluxDB yet, and both writes are on disk.
    assert sum(path.stat().st_size for path in _segments(tmp_path / "spool")) > 0
    assert writer.stats().spool_bytes == sum(path.stat().st_size for path in _segments(tmp_path / "spool"))

    backend.gate.set()
    assert writer.flush(timeout_seconds=5)
    assert backend.stored == points
    stats = writer.stats()
    assert (stats.points_accepted, stats.points_written, stats.buffer_depth) == (25, 25, 0)
    # Everything written: the spool keeps nothing.
    assert _segments(tmp_path / "spool") == []
    assert stats.spool_bytes == 0


def test_concurrent_writes_share_one_fdatasync_and_each_returns_only_after_it(
    backend: ScriptedBackend, make_writer: Callable[..., SpooledWriter], tmp_path: Path
) -> None:
    sync = GatedSync()
    writer = make_writer(fdatasync=sync)
    writes = Writes(writer)
    writes.start(0, _points(3))
    wait_until(lambda: sync.calls == 1, 5, "the first write was never fsynced")
    # While that fdatasync runs, five more writes queue up behind it.
    for index in range(1, 6):
        writes.start(index, _points(3, start=3 * index))
    wait_until(lambda: writer.stats().points_accepted == 18, 5, "the writes did not queue")
    assert writes.returned == []

    sync.release()
    wait_until(lambda: writes.returned == [0], 5, "the first write did not return after its fdatasync")
    # The other five were appended together and wait for their one fdatasync: in the file, not yet acked.
    wait_until(lambda: sync.calls == 2, 5, "the queued writes were not fsynced as a group")
    assert sum(path.stat().st_size for path in _segments(tmp_path / "spool")) == writer.stats().spool_bytes
    assert writes.returned == [0]

    sync.release()
    writes.join()
    assert sorted(writes.returned) == list(range(6))
    assert sync.calls == 2
    assert writer.flush(timeout_seconds=5)
    assert sorted(backend.stored, key=lambda point: point.time_ns) == _points(18)


def test_a_failed_fdatasync_drops_its_group_counted_and_the_spool_goes_on(
    backend: ScriptedBackend,
    make_writer: Callable[..., SpooledWriter],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend.down = True
    sync = GatedSync(held=False)
    writer = make_writer(fdatasync=sync)
    writer.write(_points(4))
    sync.fail_next = 1
    with caplog.at_level(logging.ERROR, logger="aggregator.sinks.spool"):
        writer.write(_points(4, 4))  # returns: acknowledged, as resending would not help (docs/durability.md)
    writer.write(_points(4, 8))

    stats = writer.stats()
    assert (stats.points_accepted, stats.points_dropped, stats.buffer_depth) == (12, 4, 8)
    assert any("cannot append to the spool" in r.getMessage() for r in caplog.records)
    # The failed records were cut off the file: what is on disk is exactly the good records.
    assert stats.spool_bytes == sum(path.stat().st_size for path in _segments(tmp_path / "spool"))
    writer.close(timeout_seconds=0.1)

    backend.down = False
    second = make_writer()
    assert second.flush(timeout_seconds=5)
    assert backend.stored == _points(4) + _points(4, 8)


def test_a_group_larger_than_a_segment_spans_segments_and_replays_whole(
    backend: ScriptedBackend, make_writer: Callable[..., SpooledWriter], tmp_path: Path
) -> None:
    backend.down = True
    sync = GatedSync()
    writer = make_writer(fdatasync=sync, max_bytes=1024 * 1024, batch_points=100_000)
    writes = Writes(writer)
    writes.start(0, _points(10))
    wait_until(lambda: sync.calls == 1, 5, "the first write was never fsynced")
    for index in range(1, 9):  # some 150 KiB: more than one 64 KiB segment
        writes.start(index, _points(1000, start=1000 * index))
    wait_until(lambda: writer.stats().points_accepted == 8010, 5, "the writes did not queue")
    sync.let_go()
    writes.join()
    assert sorted(writes.returned) == list(range(9))
    assert len(_segments(tmp_path / "spool")) >= 3
    assert sync.calls >= 3  # the first write, then each segment of the group
    writer.close(timeout_seconds=0.1)

    backend.down = False
    second = make_writer()
    assert second.stats().points_accepted == 8010
    assert second.flush(timeout_seconds=10)
    times = [point.time_ns for point in backend.stored]
    assert sorted(times) == sorted(point.time_ns for point in _points(10)) + list(range(1000, 9000))
    assert len(set(times)) == len(times)


def test_values_survive_the_round_trip_through_disk(
    backend: ScriptedBackend, make_writer: Callable[..., SpooledWriter]
) -> None:
    writer = make_writer()
    odd = [Point("m,x", {"t=1": 'a"b\\'}, {"v": 1e308, "nan": math.nan, "i": 3}, 17)]
    writer.write(odd)
    assert writer.flush(timeout_seconds=5)
    (stored,) = backend.stored
    assert (stored.measurement, stored.tags, stored.time_ns) == ("m,x", {"t=1": 'a"b\\'}, 17)
    assert stored.fields["v"] == 1e308
    assert math.isnan(stored.fields["nan"])
    assert stored.fields["i"] == 3.0
    assert isinstance(stored.fields["i"], float)


def test_points_spooled_during_an_outage_are_replayed_in_order_after_a_restart(
    backend: ScriptedBackend, make_writer: Callable[..., SpooledWriter], tmp_path: Path
) -> None:
    backend.down = True
    first = make_writer(batch_points=7, flush_interval_seconds=0.01)
    points = _points(50)
    for start in range(0, 50, 5):
        first.write(points[start : start + 5])
    wait_until(lambda: first.stats().write_errors >= 2, 5, "the writer never tried")
    first.close(timeout_seconds=0.1)
    assert first.stats().points_dropped == 0
    assert _segments(tmp_path / "spool")

    backend.down = False
    second = make_writer(batch_points=7)
    assert second.stats().points_accepted == 50
    assert second.flush(timeout_seconds=5)
    # Nothing lost, in order; nothing written twice.
    assert backend.stored == points
    assert _segments(tmp_path / "spool") == []


def test_a_crash_after_a_write_replays_it_and_the_replay_is_the_same_points(
    backend: ScriptedBackend, make_writer: Callable[..., SpooledWriter], tmp_path: Path
) -> None:
    # A crash after InfluxDB stored a batch but before its segment was deleted: simulated by reading a
    # copy of the spool taken while the batch was in flight.
    backend.gate.clear()
    writer = make_writer()
    writer.write(_points(5))
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in _segments(tmp_path / "spool"):
        (copy / path.name).write_bytes(path.read_bytes())
    backend.gate.set()
    assert writer.flush(timeout_seconds=5)

    replay = SpooledWriter(backend, Spool(copy, max_bytes=MAX_BYTES), flush_interval_seconds=60.0)
    try:
        assert replay.flush(timeout_seconds=5)
    finally:
        replay.close()
    # The same series and timestamps again: InfluxDB overwrites them instead of adding points.
    assert backend.stored == _points(5) + _points(5)


def test_full_spool_drops_the_oldest_segments_counts_and_logs_once(
    backend: ScriptedBackend,
    make_writer: Callable[..., SpooledWriter],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend.down = True
    writer = make_writer(max_bytes=256 * 1024, batch_points=10_000)
    written: list[Point] = []
    with caplog.at_level(logging.ERROR, logger="aggregator.sinks.spool"):
        for start in range(0, 20_000, 100):
            chunk = _points(100, start)
            written.extend(chunk)
            writer.write(chunk)
            size = sum(path.stat().st_size for path in _segments(tmp_path / "spool"))
            assert size <= 256 * 1024
    full_logs = [r for r in caplog.records if "spool full" in r.getMessage()]
    assert len(full_logs) == 1
    stats = writer.stats()
    assert stats.spool_points_dropped > 0
    assert stats.points_dropped >= stats.spool_points_dropped

    backend.down = False
    assert writer.flush(timeout_seconds=10)
    stats = writer.stats()
    # What reached InfluxDB is the newest points, in order, and every point is accounted for once.
    stored_times = [point.time_ns for point in backend.stored]
    assert stored_times == sorted(set(stored_times))
    assert stored_times[-1] == written[-1].time_ns
    assert stats.points_written + stats.points_dropped == len(written)
    assert stats.points_written == len(backend.stored)


def test_a_torn_record_at_the_end_of_a_segment_is_ignored_and_the_rest_replayed(
    backend: ScriptedBackend,
    make_writer: Callable[..., SpooledWriter],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend.down = True
    first = make_writer()
    first.write(_points(4))
    first.write(_points(4, 4))
    first.close(timeout_seconds=0.1)
    (segment,) = _segments(tmp_path / "spool")
    with segment.open("ab") as file:
        file.write(b"\x40\x00\x00\x00torn")  # a header cut short by a crash

    backend.down = False
    with caplog.at_level(logging.WARNING, logger="aggregator.sinks.spool"):
        second = make_writer()
    assert any("torn record" in record.getMessage() for record in caplog.records)
    assert second.flush(timeout_seconds=5)
    assert backend.stored == _points(8)


def test_a_corrupt_record_drops_the_rest_of_its_segment_only(
    backend: ScriptedBackend, make_writer: Callable[..., SpooledWriter], tmp_path: Path
) -> None:
    backend.down = True
    first = make_writer()
    first.write(_points(3))
    first.write(_points(3, 3))
    first.close(timeout_seconds=0.1)
    (segment,) = _segments(tmp_path / "spool")
    data = bytearray(segment.read_bytes())
    data[-2] ^= 0xFF  # flips a byte inside the second record's payload: its CRC fails
    segment.write_bytes(bytes(data))

    backend.down = False
    second = make_writer()
    assert second.flush(timeout_seconds=5)
    assert backend.stored == _points(3)
    assert second.stats().points_dropped == 3


def test_metrics_expose_the_spool(make_writer: Callable[..., SpooledWriter]) -> None:
    writer = make_writer()
    metrics = AggregatorMetrics()
    metrics.watch(sink=writer)
    text = metrics.render().decode()
    assert "kpulse_aggregator_spool_bytes 0.0" in text
    assert f"kpulse_aggregator_spool_capacity_bytes {float(MAX_BYTES)}" in text
    assert "kpulse_aggregator_spool_points_dropped_total 0.0" in text


def test_settings_choose_the_spool(tmp_path: Path) -> None:
    settings = AggregatorSettings(spool_dir=tmp_path / "s", spool_max_bytes=2 * 1024 * 1024)
    sink = build_sink(settings)
    try:
        assert isinstance(sink, SpooledWriter)
        assert (tmp_path / "s").is_dir()
        assert sink.stats().spool_capacity_bytes == 2 * 1024 * 1024
    finally:
        sink.close(timeout_seconds=0.1)


def test_readiness_with_a_spool_survives_an_influxdb_outage_until_the_spool_is_nearly_full(
    backend: ScriptedBackend, make_writer: Callable[..., SpooledWriter]
) -> None:
    backend.down = True
    writer = make_writer(max_bytes=256 * 1024, batch_points=1_000_000, flush_interval_seconds=0.01)
    with serve(create_app(AggregatorSettings(), sink=writer)) as url:
        writer.write(_points(10))
        wait_until(lambda: writer.stats().write_errors, 5, "the write was not attempted")
        during_outage = requests.get(f"{url}/readyz", timeout=5)
        while (writer.stats().spool_bytes or 0) <= 0.9 * 256 * 1024:
            writer.write(_points(100))
        nearly_full = requests.get(f"{url}/readyz", timeout=5)
        backend.down = False
        assert writer.flush(timeout_seconds=10)

    assert during_outage.status_code == 200, during_outage.json()
    assert nearly_full.status_code == 503
    assert nearly_full.json()["reason"].startswith("spool 9")

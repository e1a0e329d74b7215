"""The v1 backend and the buffered writer against the real InfluxDB 1.x: what is written is what is read."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import requests

from aggregator.errors import SinkError
from aggregator.points import Point
from aggregator.sinks.buffered import BufferedWriter
from aggregator.sinks.influx_v1 import InfluxV1Backend
from tests.aggregator.servers import TcpForwarder
from tests.helpers import free_tcp_port, wait_until

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000_000_000


def _points(count: int, *, start: int = 0, measurement: str = "container") -> list[Point]:
    return [
        Point(
            measurement,
            {"cluster": "c", "node": "n1", "namespace": "ns", "pod": f"p{i % 3}", "container": f"c{i}"},
            {"cpu_usage_millicores": i * 1.5, "memory_usage_bytes": float(1 << 20) + i},
            T0 + i * 1_000_000_000,
        )
        for i in range(start, start + count)
    ]


def _stored(reader: InfluxV1Backend, measurement: str = "container") -> list[dict[str, object]]:
    series = reader.query(f'SELECT * FROM "{measurement}" ORDER BY time')
    return series[0].rows() if series else []


def _as_rows(points: list[Point]) -> list[dict[str, object]]:
    return [{"time": p.time_ns, **p.tags, **p.fields} for p in points]


@pytest.fixture
def backend(influx_url: str, influx_db: str) -> Iterator[InfluxV1Backend]:
    backend = InfluxV1Backend(requests.Session(), url=influx_url, database=influx_db)
    yield backend
    backend.close()


def test_points_are_read_back_exactly_and_the_database_is_created(
    backend: InfluxV1Backend, influx_reader: InfluxV1Backend, influx_db: str
) -> None:
    databases = [row[0] for series in backend.query("SHOW DATABASES") for row in series.values]
    assert influx_db not in databases
    points = _points(25)

    result = backend.write_batch(points)

    assert (result.sent, result.rejected, result.message) == (25, 0, None)
    assert _stored(influx_reader) == _as_rows(points)


@pytest.mark.parametrize("compress", [True, False])
def test_gzip_and_plain_bodies_store_the_same_points(
    influx_url: str, influx_db: str, influx_reader: InfluxV1Backend, compress: bool
) -> None:
    backend = InfluxV1Backend(requests.Session(), url=influx_url, database=influx_db, compress=compress)
    points = _points(30)

    result = backend.write_batch(points)
    backend.close()

    assert (result.sent, result.rejected) == (30, 0)
    assert _stored(influx_reader) == _as_rows(points)


@pytest.mark.parametrize(
    ("url", "compressed"),
    [
        ("http://127.0.0.1:8086", False),
        ("http://127.3.4.5:8086/prefix", False),
        ("http://localhost:8086", False),
        ("http://[::1]:8086", False),
        ("http://influxdb:8086", True),
        ("https://10.0.0.7:8086", True),
        ("http://[2001:db8::1]:8086", True),
    ],
)
def test_bodies_are_gzipped_unless_influxdb_is_on_this_host(url: str, compressed: bool) -> None:
    backend = InfluxV1Backend(requests.Session(), url=url, database="d")
    assert backend.compress is compressed
    assert (backend.encode_body(["m f=1 1"])[:2] == b"\x1f\x8b") is compressed  # the gzip magic
    backend.close()


def test_a_type_conflict_is_reported_with_the_servers_message_and_the_other_points_land(
    backend: InfluxV1Backend, influx_reader: InfluxV1Backend, influx_url: str, influx_db: str
) -> None:
    # Someone else wrote memory_usage_bytes as an integer into "pod" first; kpulse always writes floats.
    backend.create_database()
    seeded = requests.post(
        f"{influx_url}/write",
        params={"db": influx_db},
        # InfluxDB 1.x keeps field types per shard: the seed must fall into the same shard (same week).
        data=f"pod,cluster=c,node=n1 memory_usage_bytes=1i {T0}",
        timeout=5,
    )
    assert seeded.status_code == 204
    good = _points(3)
    conflicting = _points(2, start=10, measurement="pod")

    result = backend.write_batch([*good[:2], *conflicting, good[2]])

    assert result.sent == 5
    assert result.rejected == 2
    assert result.message is not None
    assert "field type conflict" in result.message
    assert 'input field "memory_usage_bytes" on measurement "pod"' in result.message
    assert _stored(influx_reader) == _as_rows(good)


def test_the_writer_counts_and_logs_a_refusal_and_does_not_retry_it(
    influx_url: str, influx_db: str, influx_reader: InfluxV1Backend, caplog: pytest.LogCaptureFixture
) -> None:
    backend = InfluxV1Backend(requests.Session(), url=influx_url, database=influx_db)
    backend.create_database()
    seeded = requests.post(
        f"{influx_url}/write",
        params={"db": influx_db},
        data=f'pod,cluster=c memory_usage_bytes="x" {T0}',
        timeout=5,
    )
    assert seeded.status_code == 204
    writer = BufferedWriter(backend, batch_points=100, flush_interval_seconds=60, max_points=1000)
    good = _points(4)

    with caplog.at_level(logging.ERROR, logger="aggregator.sinks.buffered"):
        writer.write([*good, *_points(3, start=20, measurement="pod")])
        assert writer.flush(timeout_seconds=10)
    stats = writer.stats()
    writer.close()

    assert (stats.points_written, stats.points_rejected, stats.write_errors) == (4, 3, 1)
    assert stats.last_error is None  # a refusal is not an outage
    assert _stored(influx_reader) == _as_rows(good)
    (record,) = [r for r in caplog.records if "refused" in r.getMessage()]
    assert "3 of 7 points" in record.getMessage()
    assert "field type conflict" in record.getMessage()


def test_a_missing_retention_policy_is_a_transient_error_carrying_the_servers_message(
    influx_url: str, influx_db: str
) -> None:
    backend = InfluxV1Backend(
        requests.Session(), url=influx_url, database=influx_db, retention_policy="no_such_rp"
    )
    backend.create_database()

    with pytest.raises(SinkError, match="retention policy not found: no_such_rp"):
        backend.write_batch(_points(1))
    backend.close()


def test_unreachable_influxdb_keeps_points_buffered_and_writes_all_of_them_later(
    influx_url: str, influx_db: str, influx_reader: InfluxV1Backend
) -> None:
    port = free_tcp_port()  # nothing listens here yet: connection refused
    backend = InfluxV1Backend(
        requests.Session(), url=f"http://127.0.0.1:{port}", database=influx_db, timeout_seconds=2
    )
    writer = BufferedWriter(
        backend,
        batch_points=10,
        flush_interval_seconds=0.05,
        max_points=1000,
        retry_initial_seconds=0.05,
        retry_max_seconds=0.2,
    )
    points = _points(35)
    for start in range(0, 35, 7):
        writer.write(points[start : start + 7])

    wait_until(lambda: writer.stats().write_errors >= 3, 10, "the writer did not retry")
    assert not writer.flush(timeout_seconds=0.2)
    assert writer.stats().buffer_depth == 35
    assert writer.stats().last_error is not None
    with pytest.raises(SinkError):
        writer.ping()

    target = influx_url.removeprefix("http://").split(":")
    forwarder = TcpForwarder(port, (target[0], int(target[1])))  # InfluxDB "comes back" on that port
    try:
        assert writer.flush(timeout_seconds=20)
        stats = writer.stats()
        writer.close()
    finally:
        forwarder.stop()

    assert (stats.points_written, stats.points_dropped, stats.buffer_depth) == (35, 0, 0)
    assert stats.last_error is None
    assert _stored(influx_reader) == _as_rows(points)


def test_overflow_while_unreachable_drops_the_oldest_points_and_counts_them(
    influx_url: str, influx_db: str, influx_reader: InfluxV1Backend, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_tcp_port()
    backend = InfluxV1Backend(
        requests.Session(), url=f"http://127.0.0.1:{port}", database=influx_db, timeout_seconds=2
    )
    writer = BufferedWriter(
        backend,
        batch_points=5,
        flush_interval_seconds=0.05,
        max_points=20,
        retry_initial_seconds=0.05,
        retry_max_seconds=0.1,
    )
    points = _points(60)
    writer.write(points[:5])
    # The first batch is now in flight (retrying): it stays, the queue behind it is bounded.
    wait_until(lambda: writer.stats().write_errors >= 1, 10, "the writer did not try")
    with caplog.at_level(logging.ERROR, logger="aggregator.sinks.buffered"):
        for start in range(5, 60, 5):
            writer.write(points[start : start + 5])

    overflow_logs = [r for r in caplog.records if "write buffer full" in r.getMessage()]
    assert len(overflow_logs) == 1  # once per episode, not per dropped point
    assert writer.stats().points_dropped == 35
    assert writer.stats().buffer_depth == 25

    target = influx_url.removeprefix("http://").split(":")
    forwarder = TcpForwarder(port, (target[0], int(target[1])))
    try:
        assert writer.flush(timeout_seconds=20)
        stats = writer.stats()
        writer.close()
    finally:
        forwarder.stop()

    assert (stats.points_written, stats.points_dropped) == (25, 35)
    # In flight first (oldest, kept), then the newest 20: points 5..39 were dropped.
    assert _stored(influx_reader) == _as_rows(points[:5] + points[40:])


def test_query_errors_carry_influxdbs_message(backend: InfluxV1Backend) -> None:
    with pytest.raises(SinkError, match="error parsing query"):
        backend.query("SELEC nothing")


def test_ping_answers_for_the_real_server_and_fails_for_a_closed_port(backend: InfluxV1Backend) -> None:
    backend.ping()
    closed = InfluxV1Backend(requests.Session(), url=f"http://127.0.0.1:{free_tcp_port()}", database="x")
    with pytest.raises(SinkError, match="unreachable"):
        closed.ping()
    closed.close()

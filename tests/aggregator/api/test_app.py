"""The app as a whole: a lifespan that builds the InfluxDB writer, ticks rollups, and drains at shutdown."""

from __future__ import annotations

import time

import pytest
import requests

from aggregator.api import build_sink, create_app
from aggregator.api.state import AggregatorState
from aggregator.catalog import Level
from aggregator.errors import SinkError
from aggregator.points import Point
from aggregator.settings import AggregatorSettings
from aggregator.sinks.buffered import BufferedWriter
from aggregator.sinks.influx_v1 import InfluxV1Backend
from aggregator.sinks.influx_v2 import InfluxV2Backend
from aggregator.sinks.memory import MemorySink
from tests.aggregator.api.batches import SECOND, T0, gzip_body, make_batch
from tests.aggregator.servers import serve
from tests.helpers import wait_until

GZIP = {"Content-Encoding": "gzip", "Content-Type": "application/json"}


def _measurements(sink: MemorySink) -> set[str]:
    sink.flush()
    return {point.measurement for point in sink.points}


def _stored_anything(reader: InfluxV1Backend) -> bool:
    try:
        return bool(reader.query('SELECT count(*) FROM "container"'))
    except SinkError:  # the database is created by the first write
        return False


@pytest.mark.integration
def test_batches_posted_over_http_are_read_back_from_influxdb(
    influx_url: str, influx_db: str, influx_reader: InfluxV1Backend
) -> None:
    settings = AggregatorSettings(
        influx_url=influx_url, influx_database=influx_db, flush_interval_seconds=0.1, resolution_seconds=10
    )
    # Recent times: the rollup window only keeps buckets near the wall clock.
    start = time.time_ns() // (10 * SECOND) * (10 * SECOND) - 20 * SECOND
    first, second = make_batch(scraped_at_ns=start), make_batch(scraped_at_ns=start + 10 * SECOND)

    with serve(create_app(settings)) as url:
        for batch in (first, second):
            response = requests.post(f"{url}/api/v1/ingest", data=gzip_body(batch), headers=GZIP, timeout=10)
            assert response.status_code == 202, response.text
        wait_until(lambda: _stored_anything(influx_reader), 10, "no container point in InfluxDB")
        metrics = requests.get(f"{url}/metrics", timeout=5).text
    # Shutdown drained the writer: every point is in InfluxDB now.

    rows = influx_reader.query(
        'SELECT memory_usage_bytes, cpu_usage_millicores FROM "container" GROUP BY "container" ORDER BY time'
    )
    by_container = {series.tags["container"]: series.rows() for series in rows}
    assert by_container == {
        f"app{i}": [
            {"time": start, "memory_usage_bytes": 100 * 2**20 + i, "cpu_usage_millicores": None},
            # 1 s of CPU over 10 s of wall time between the two samples: 100 millicores.
            {
                "time": start + 10 * SECOND,
                "memory_usage_bytes": 100 * 2**20 + i,
                "cpu_usage_millicores": 100.0,
            },
        ]
        for i in range(2)
    }
    (nodes,) = influx_reader.query('SELECT cpu_capacity_millicores FROM "node"')
    assert nodes.rows()[0]["cpu_capacity_millicores"] == 4000
    (cluster,) = influx_reader.query('SELECT node_count, container_count FROM "cluster"')
    assert cluster.rows() == [
        {"time": start, "node_count": 1, "container_count": 2},
        {"time": start + 10 * SECOND, "node_count": 1, "container_count": 2},
    ]
    assert "kpulse_aggregator_points_written_total" in metrics
    assert "kpulse_aggregator_scrape_to_write_seconds_count" in metrics
    assert 'kpulse_aggregator_rates_suppressed_total{reason="first"}' in metrics


def test_rollups_are_written_by_the_background_tick_once_their_grace_ends() -> None:
    now = [T0 + 1 * SECOND]
    sink = MemorySink()
    settings = AggregatorSettings(resolution_seconds=10, rollup_grace_seconds=5)
    with serve(create_app(settings, sink=sink, clock=lambda: now[0])) as url:
        response = requests.post(
            f"{url}/api/v1/ingest", data=gzip_body(make_batch()), headers=GZIP, timeout=10
        )
        assert response.status_code == 202
        assert Level.CLUSTER not in _measurements(sink)  # the first bucket waits for its grace period

        now[0] = T0 + 16 * SECOND
        wait_until(lambda: Level.CLUSTER in _measurements(sink), 10, "the tick did not emit rollups")

    (cluster,) = [p for p in sink.points if p.measurement == Level.CLUSTER]
    assert cluster.time_ns == T0
    assert cluster.fields["node_count"] == 1.0
    assert Level.NAMESPACE in _measurements(sink)


def test_a_failing_tick_is_counted_and_the_ticks_go_on(monkeypatch: pytest.MonkeyPatch) -> None:
    sink = MemorySink()
    app = create_app(AggregatorSettings(), sink=sink)
    state: AggregatorState = app.state.aggregator
    calls: list[int] = []

    def tick(now_ns: int) -> list[Point]:
        calls.append(now_ns)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return [Point("cluster", {"cluster": "c"}, {"node_count": 1.0}, now_ns)]

    monkeypatch.setattr(state.pipeline, "tick", tick)
    with serve(app) as url:
        wait_until(lambda: len(calls) >= 2, 10, "the tick loop stopped")
        metrics = requests.get(f"{url}/metrics", timeout=5).text

    assert "kpulse_aggregator_tick_errors_total 1.0" in metrics
    sink.flush()
    assert sink.points


def test_shutdown_flushes_a_handed_in_sink_without_closing_it() -> None:
    sink = MemorySink()
    with serve(create_app(AggregatorSettings(), sink=sink)) as url:
        response = requests.post(
            f"{url}/api/v1/ingest", data=gzip_body(make_batch()), headers=GZIP, timeout=10
        )
        assert response.status_code == 202

    assert sink.pending == 0
    assert len(sink.points) == response.json()["points"]
    assert not sink.closed


def test_build_sink_follows_the_settings() -> None:
    v1 = build_sink(AggregatorSettings(write_batch_points=7, write_buffer_max_points=70))
    v2 = build_sink(
        AggregatorSettings(
            influx_api="v2",
            influx_token="t",
            influx_org="o",
            influx_bucket="b",
        )
    )
    try:
        assert isinstance(v1, BufferedWriter)
        assert isinstance(v1._backend, InfluxV1Backend)
        assert v1._backend.database == "kpulse"
        assert v1.stats().buffer_capacity == 70
        assert isinstance(v2._backend, InfluxV2Backend)
        assert v2._backend.bucket == "b"
    finally:
        v1.close(timeout_seconds=0.1)
        v2.close(timeout_seconds=0.1)

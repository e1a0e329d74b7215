"""History from InfluxDB: the InfluxQL it sends, and one seamless series across InfluxDB and the window."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from aggregator.catalog import Level
from aggregator.errors import SinkError
from aggregator.points import Point
from aggregator.query.errors import HistoryUnavailableError
from aggregator.query.history import History, build_influxql, influx_duration, quote_string
from aggregator.query.service import QueryService
from aggregator.query.store import RecentStore
from aggregator.sinks.influx_v1 import InfluxV1Backend, quote_identifier
from aggregator.sinks.lineprotocol import to_lines

S = 1_000_000_000
RES = 10 * S
T0 = 1_700_000_000 * S
CPU = "cpu_usage_millicores"


@dataclass
class Series:
    columns: list[str]
    values: list[list[Any]]


@dataclass
class FakeInflux:
    answer: list[Series] = field(default_factory=list)
    fail: bool = False
    statements: list[str] = field(default_factory=list)

    def query(self, influxql: str) -> Sequence[Series]:
        self.statements.append(influxql)
        if self.fail:
            raise SinkError("InfluxDB at http://127.0.0.1:1 unreachable: connection refused")
        return self.answer


def test_single_series_levels_take_the_mean_directly() -> None:
    statement = build_influxql(
        Level.NODE, ("prod", "n1"), CPU, start_ns=10, stop_ns=20, step_ns=60 * S, resolution_ns=RES
    )
    assert statement == (
        'SELECT mean("cpu_usage_millicores") FROM "node" WHERE "cluster" = \'prod\' AND "node" = \'n1\' '
        "AND time >= 10 AND time < 20 GROUP BY time(60s) fill(none)"
    )


def test_pods_and_containers_are_summed_over_nodes_per_bucket_before_the_mean() -> None:
    statement = build_influxql(
        Level.POD,
        ("prod", "shop", "web-1"),
        CPU,
        start_ns=10,
        stop_ns=20,
        step_ns=20 * S,
        resolution_ns=RES,
        retention_policy="autogen",
    )
    assert statement == (
        'SELECT mean("cpu_usage_millicores") FROM '
        '(SELECT sum("cpu_usage_millicores") AS "cpu_usage_millicores" '
        'FROM "autogen"."pod" WHERE "cluster" = \'prod\' AND "namespace" = \'shop\' AND "pod" = \'web-1\' '
        "AND time >= 10 AND time < 20 GROUP BY time(10s) fill(none)) WHERE time >= 10 AND time < 20 "
        "GROUP BY time(20s) fill(none)"
    )


def test_values_and_durations_are_escaped_and_exact() -> None:
    assert quote_string("it's a \\ test") == "'it\\'s a \\\\ test'"
    assert [influx_duration(ns) for ns in (10 * S, 1_500_000_000, 2_000, 7)] == ["10s", "1500ms", "2u", "7ns"]
    with pytest.raises(ValueError, match="named by 2 tags"):
        build_influxql(Level.NODE, ("prod",), CPU, start_ns=0, stop_ns=1, step_ns=1, resolution_ns=1)


def test_rows_are_read_in_time_order_without_empty_values() -> None:
    fake = FakeInflux([Series(["time", "mean"], [[T0 + RES, 2.0], [T0, 1], [T0 + 2 * RES, None]])])
    history = History(fake, resolution_ns=RES)

    rows = history.read(Level.NODE, ("prod", "n1"), CPU, start_ns=T0, stop_ns=T0 + 3 * RES, step_ns=RES)

    assert rows == [(T0, 1.0), (T0 + RES, 2.0)]
    assert history.read(Level.NODE, ("prod", "n1"), CPU, start_ns=T0, stop_ns=T0, step_ns=RES) == []
    assert len(fake.statements) == 1


def test_an_unreachable_influxdb_is_reported_as_history_unavailable() -> None:
    history = History(FakeInflux(fail=True), resolution_ns=RES)
    with pytest.raises(HistoryUnavailableError, match="unreachable"):
        history.read(Level.NODE, ("prod", "n1"), CPU, start_ns=T0, stop_ns=T0 + RES, step_ns=RES)


# -- against the real InfluxDB -------------------------------------------------------------------------


@pytest.fixture
def kph8_database(influx_url: str) -> Iterator[InfluxV1Backend]:
    """A fresh ``kph8_`` database (created), dropped after the test."""
    name = f"kph8_{uuid.uuid4().hex[:12]}"
    with requests.Session() as session:
        backend = InfluxV1Backend(session, url=influx_url, database=name)
        backend.create_database()
        try:
            yield backend
        finally:
            backend.query(f"DROP DATABASE {quote_identifier(name)}", database=name)


def _cpu(i: int) -> float:
    """A value that differs from bucket to bucket, so any shifted, missing or doubled bucket shows."""
    return 100.0 + (i * 37) % 101


def _container(i: int, value: float, node: str) -> Point:
    tags = {"cluster": "prod", "node": node, "namespace": "shop", "pod": "web-1", "container": "app"}
    return Point("container", tags, {CPU: value}, T0 + i * RES)


def _write(influx_url: str, database: str, points: list[Point]) -> None:
    body = "\n".join(to_lines(points)).encode()
    response = requests.post(
        f"{influx_url}/write", params={"db": database, "precision": "ns"}, data=body, timeout=30
    )
    assert response.status_code == 204, response.text


@pytest.mark.integration
def test_a_range_spanning_influxdb_and_the_window_is_one_seamless_series(
    influx_url: str, kph8_database: InfluxV1Backend
) -> None:
    buckets = 2400  # 400 minutes at 10 s: InfluxDB holds it all, memory the last 90 buckets

    # The container moved from n1 to n2 halfway: the entity is summed over nodes on both sides.
    def node(i: int) -> str:
        return "n1" if i < buckets // 2 else "n2"

    recent_from = buckets - 90
    # InfluxDB gets every bucket, with a marker on the recent ones: memory must serve those. The seam falls
    # on a step boundary, so within the window's first step (up to 3 buckets here) InfluxDB may serve.
    marked_from = recent_from + 3
    _write(
        influx_url,
        kph8_database.database,
        [_container(i, _cpu(i) + (1000.0 if i >= marked_from else 0.0), node(i)) for i in range(buckets)],
    )
    store = RecentStore(resolution_seconds=10, window_seconds=900, eviction_seconds=86_400)
    now = T0 + buckets * RES
    for i in range(recent_from, buckets):
        store.add([_container(i, _cpu(i), node(i))], now_ns=now)
    service = QueryService(
        store, cluster="prod", history=History(kph8_database, resolution_ns=RES), clock_ns=lambda: now
    )
    entity = ("prod", "shop", "web-1", "app")

    # 30 minutes ending now: step = resolution, 90 buckets from memory and 90 from InfluxDB.
    short = service.series(Level.CONTAINER, entity, CPU, T0 + (buckets - 180) * RES, now)
    assert short == [(T0 + i * RES, _cpu(i)) for i in range(buckets - 180, buckets)]

    # The whole range: 2400 buckets need a 30 s step to stay within 1000 points; memory is averaged alike.
    whole = service.series(Level.CONTAINER, entity, CPU, T0, now)
    step = 3 * RES
    assert service.step_ns(T0, now) == step
    # Steps are epoch-aligned, as InfluxDB's GROUP BY time() is: T0 is not a multiple of 30 s.
    groups: dict[int, list[float]] = {}
    for i in range(buckets):
        time = T0 + i * RES
        groups.setdefault(time - time % step, []).append(_cpu(i))
    expected = [(start, sum(values) / len(values)) for start, values in sorted(groups.items())]
    assert T0 % step != 0
    assert [time for time, _ in whole] == [time for time, _ in expected], "a gap or a duplicate at the seam"
    assert [value for _, value in whole] == pytest.approx([value for _, value in expected])

"""The Heapster model API through the real app: batches posted to /api/v1/ingest, read back over HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import requests

from aggregator.points import Point
from aggregator.query.timefmt import heapster_time
from aggregator.sinks.influx_v1 import InfluxV1Backend, quote_identifier
from aggregator.sinks.lineprotocol import to_lines
from tests.aggregator.query.apps import RunningAggregator, running_aggregator
from tests.aggregator.query.simulation import NS_PER_S, SimContainer, Simulation

MODEL = "/api/v1/model"
MIB = 1024 * 1024


def _simulation() -> Simulation:
    return Simulation(
        containers=[
            SimContainer("shop", "web-1", "app", cpu_millicores=250, memory_bytes=64 * MIB),
            SimContainer("shop", "web-1", "sidecar", cpu_millicores=50.4, memory_bytes=16 * MIB),
            SimContainer("shop", "web-2", "app", cpu_millicores=700, memory_limit_bytes=256 * MIB),
            SimContainer("default", "redis", "redis", node="node-2", cpu_millicores=1200, memory_bytes=MIB),
        ],
        node_cpu_millicores=1500,
    )


@pytest.fixture(scope="module")
def running() -> Iterator[RunningAggregator]:
    with running_aggregator(_simulation(), scrapes=12) as running:
        yield running


def _values(running: RunningAggregator, path: str, **params: str) -> list[int]:
    response = running.get(f"{MODEL}{path}", **params)
    assert response.status_code == 200, response.text
    return [point["value"] for point in response.json()["metrics"]]


def test_listings_name_what_the_window_holds(running: RunningAggregator) -> None:
    assert running.get(f"{MODEL}/nodes/").json() == ["node-1", "node-2"]
    assert running.get(f"{MODEL}/namespaces/").json() == ["default", "shop"]
    assert running.get(f"{MODEL}/namespaces/shop/pods/").json() == ["web-1", "web-2"]
    assert running.get(f"{MODEL}/namespaces/shop/pods/web-1/containers/").json() == ["app", "sidecar"]


def test_metric_listings_name_only_what_the_entity_has(running: RunningAggregator) -> None:
    limited = running.get(f"{MODEL}/namespaces/shop/pods/web-2/containers/app/metrics/").json()
    unlimited = running.get(f"{MODEL}/namespaces/shop/pods/web-1/containers/app/metrics/").json()
    node = running.get(f"{MODEL}/nodes/node-1/metrics/").json()
    assert limited == ["cpu/usage_rate", "memory/usage", "memory/working_set", "memory/limit"]
    assert unlimited == ["cpu/usage_rate", "memory/usage", "memory/working_set"]
    assert "cpu/node_capacity" in node
    assert "network/rx_rate" in running.get(f"{MODEL}/namespaces/shop/pods/web-1/metrics/").json()
    assert "cpu/usage_rate" in running.get(f"{MODEL}/metrics/").json()


def test_values_are_the_pipelines_rates_and_sums_in_heapster_units(running: RunningAggregator) -> None:
    # Eleven buckets have a rate (the first scrape of a counter has none).
    assert _values(running, "/namespaces/shop/pods/web-1/containers/app/metrics/cpu/usage_rate") == [250] * 11
    assert (
        _values(running, "/namespaces/shop/pods/web-1/containers/sidecar/metrics/cpu/usage_rate") == [50] * 11
    )
    assert _values(running, "/namespaces/shop/pods/web-1/metrics/cpu/usage_rate") == [300] * 11
    assert _values(running, "/namespaces/shop/pods/web-1/metrics/memory/working_set") == [80 * MIB] * 12
    assert _values(running, "/nodes/node-2/metrics/cpu/usage_rate") == [1500] * 11
    assert _values(running, "/namespaces/shop/metrics/cpu/usage_rate")[-3:] == [1000] * 3
    assert _values(running, "/metrics/cpu/usage_rate")[-3:] == [3000] * 3
    assert _values(running, "/cluster/metrics/cpu/node_capacity")[-1] == 8000
    assert _values(running, "/namespaces/shop/pods/web-1/metrics/network/rx_rate") == [2000] * 11


def test_the_response_has_heapsters_shape(running: RunningAggregator) -> None:
    body = running.get(f"{MODEL}/nodes/node-1/metrics/memory/working_set").json()
    assert set(body) == {"metrics", "latestTimestamp"}
    last = running.sim.scrape_time_ns(running.sim.scrape - 1) - NS_PER_S // 2
    assert body["latestTimestamp"] == body["metrics"][-1]["timestamp"] == "2023-11-14T22:15:10Z"
    assert last == 1_700_000_110 * NS_PER_S
    assert all(isinstance(point["value"], int) for point in body["metrics"])


def test_start_and_end_select_buckets_inclusively(running: RunningAggregator) -> None:
    path = f"{MODEL}/nodes/node-1/metrics/cpu/usage_rate"
    body = running.get(path, start="2023-11-14T22:14:00Z", end="2023-11-14T23:14:20+01:00").json()
    assert [point["timestamp"] for point in body["metrics"]] == [
        "2023-11-14T22:14:00Z",
        "2023-11-14T22:14:10Z",
        "2023-11-14T22:14:20Z",
    ]
    empty = running.get(path, start="2023-11-14T22:14:01Z", end="2023-11-14T22:14:09Z").json()
    assert empty == {"metrics": [], "latestTimestamp": "0001-01-01T00:00:00Z"}


def test_pod_list_answers_in_the_order_asked(running: RunningAggregator) -> None:
    body = running.get(f"{MODEL}/namespaces/shop/pod-list/web-2,web-1/metrics/cpu/usage_rate").json()
    assert [item["metrics"][-1]["value"] for item in body["items"]] == [700, 300]


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/nodes/nope/metrics/", 404, "node 'nope' not found"),
        ("/nodes/node-1/metrics/cpu/nope", 404, "unknown metric 'cpu/nope'"),
        ("/namespaces/nope/pods/", 404, "namespace 'nope' not found"),
        ("/namespaces/shop/pods/nope/metrics/cpu/usage_rate", 404, "pod 'shop/nope' not found"),
        (
            "/namespaces/shop/pods/web-1/containers/nope/metrics/",
            404,
            "container 'shop/web-1/nope' not found",
        ),
        ("/namespaces/shop/pod-list/web-1,nope,gone/metrics/cpu/usage_rate", 404, "nope, gone"),
        ("/namespaces/shop/pods/web-1/metrics/cpu/node_capacity", 404, "does not exist for a pod"),
        ("/nodes/node-1/metrics/cpu/usage_rate?start=yesterday", 400, "start='yesterday' is not an RFC 3339"),
        (
            "/nodes/node-1/metrics/cpu/usage_rate?start=2024-01-02T00:00:00Z&end=2024-01-01T00:00:00Z",
            400,
            "after end",
        ),
    ],
)
def test_errors_name_what_is_wrong(running: RunningAggregator, path: str, status: int, message: str) -> None:
    response = running.get(f"{MODEL}{path}")
    assert response.status_code == status
    assert message in response.json()["detail"]


def test_a_query_token_is_required_once_set() -> None:
    with running_aggregator(_simulation(), scrapes=2, query_token="s3cret") as running:
        url = f"{running.url}{MODEL}/nodes/"
        missing = requests.get(url, timeout=10)
        wrong = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=10)
        right = requests.get(url, headers={"Authorization": "Bearer s3cret"}, timeout=10)
        kubernetes = requests.get(f"{running.url}/apis/metrics.k8s.io/v1beta1/nodes", timeout=10)
        ingest_still_works = running.sink.stats().points_accepted > 0
    assert missing.status_code == wrong.status_code == 401
    assert "KPULSE_AGGREGATOR_QUERY_TOKEN" in missing.json()["detail"]
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert right.status_code == 200
    assert right.json() == ["node-1", "node-2"]
    assert kubernetes.status_code == 401
    assert kubernetes.json()["kind"] == "Status"
    assert kubernetes.json()["reason"] == "Unauthorized"
    assert ingest_still_works


@pytest.fixture
def kph8_history(influx_url: str) -> Iterator[InfluxV1Backend]:
    name = f"kph8_{uuid.uuid4().hex[:12]}"
    with requests.Session() as session:
        backend = InfluxV1Backend(session, url=influx_url, database=name)
        backend.create_database()
        try:
            yield backend
        finally:
            backend.query(f"DROP DATABASE {quote_identifier(name)}", database=name)


@pytest.mark.integration
def test_a_range_older_than_the_window_is_read_from_influxdb_seamlessly(
    influx_url: str, kph8_history: InfluxV1Backend
) -> None:
    sim = _simulation()
    first = sim.scrape_time_ns(0) - NS_PER_S // 2
    # An hour of node-1 history before the simulation starts, as an earlier aggregator wrote it.
    older = [
        Point(
            "node",
            {"cluster": sim.cluster, "node": "node-1"},
            {"cpu_usage_millicores": 900.0},
            first - i * 10 * NS_PER_S,
        )
        for i in range(1, 361)
    ]
    response = requests.post(
        f"{influx_url}/write",
        params={"db": kph8_history.database, "precision": "ns"},
        data="\n".join(to_lines(older)).encode(),
        timeout=30,
    )
    assert response.status_code == 204, response.text
    with running_aggregator(
        sim, scrapes=6, influx_url=influx_url, influx_database=kph8_history.database
    ) as running:
        body = running.get(
            f"{MODEL}/nodes/node-1/metrics/cpu/usage_rate",
            start="2023-11-14T22:03:20Z",  # 10 minutes before the first scrape
            end="2023-11-14T22:14:10Z",
        ).json()
    times = [point["timestamp"] for point in body["metrics"]]
    values = [point["value"] for point in body["metrics"]]
    step = 10 * NS_PER_S
    # 60 buckets from InfluxDB up to the first bucket in memory, then memory's; the first scrape in memory
    # has no CPU rate yet (a counter needs two samples), so 22:13:20 itself has no value.
    expected = [first - i * step for i in range(60, 0, -1)] + [first + i * step for i in range(1, 6)]
    assert times == [heapster_time(time) for time in expected]
    assert values == [900] * 60 + [1500] * 5

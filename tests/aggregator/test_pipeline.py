"""The pipeline end to end without I/O: real Docker reads to rates, rate edge cases, sums up every level."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator import catalog
from aggregator.catalog import Level, fields_for
from aggregator.pipeline import Pipeline
from aggregator.points import Point
from collector.wire import Batch, ContainerSample, NetworkCounters, NodeSample, PodSample

S = 1_000_000_000
RES = 10 * S
GRACE = 5 * S
EXPIRY = 300 * S
T0 = 1_700_000_000 * S
"""A bucket start: the tests' first scrape."""
DOCKER = Path(__file__).resolve().parents[1] / "fixtures" / "docker" / "engine-20.10-cgroupv1"

CPU = catalog.CPU_USAGE_MILLICORES.name
CPU_USER = catalog.CPU_USER_MILLICORES.name
CPU_SYSTEM = catalog.CPU_SYSTEM_MILLICORES.name
CPU_RATES = (CPU, CPU_USER, CPU_SYSTEM)
THROTTLED = catalog.CPU_THROTTLED_RATIO.name
RX = catalog.NETWORK_RX_BYTES_PER_SECOND.name
TX = catalog.NETWORK_TX_BYTES_PER_SECOND.name
CONTAINERS = catalog.CONTAINER_COUNT.name
PODS = catalog.POD_COUNT.name
NODES = catalog.NODE_COUNT.name
NETWORK_FIELDS = {metric.name for metric in catalog.METRICS if metric.name.startswith("network_")}
SUMMED_INTO_POD = (
    {metric.name for metric in fields_for(Level.POD)}
    & {metric.name for metric in fields_for(Level.CONTAINER)}
) - NETWORK_FIELDS
SUMMED_INTO_NODE = {
    catalog.CPU_LIMIT_MILLICORES.name,
    catalog.CPU_REQUEST_MILLICORES.name,
    catalog.MEMORY_LIMIT_BYTES.name,
    catalog.MEMORY_REQUEST_BYTES.name,
    catalog.RESTART_COUNT.name,
}


def _pipeline(*, expiry_ns: int = EXPIRY) -> Pipeline:
    return Pipeline(
        cluster="c1",
        resolution_seconds=RES / S,
        rollup_grace_seconds=GRACE / S,
        series_expiry_seconds=expiry_ns / S,
    )


def _container(**values: Any) -> ContainerSample:
    fields: dict[str, Any] = {
        "container_id": "c-app",
        "started_at_ns": 1,
        "timestamp_ns": T0,
        "namespace": "shop",
        "pod": "web",
        "container": "app",
    }
    fields.update(values)
    return ContainerSample(**fields)


def _batch(
    t_ns: int,
    containers: Sequence[ContainerSample] = (),
    *,
    node: str = "n1",
    pods: Sequence[PodSample] = (),
    node_sample: NodeSample | None = None,
    batch_id: str | None = None,
) -> Batch:
    return Batch(
        batch_id=batch_id or f"{node}-{t_ns}",
        node=node,
        source="docker",
        scraped_at_ns=t_ns,
        interval_seconds=RES / S,
        node_sample=node_sample,
        containers=list(containers),
        pods=list(pods),
    )


def _of(points: Iterable[Point], level: Level, **tags: str) -> list[Point]:
    return [
        point
        for point in points
        if point.measurement == level.value and all(point.tags.get(k) == v for k, v in tags.items())
    ]


def _one(points: Iterable[Point], level: Level, **tags: str) -> Point:
    (point,) = _of(points, level, **tags)
    return point


def _cpu_sample(t_ns: int, cpu_ns: int, **values: Any) -> ContainerSample:
    return _container(timestamp_ns=t_ns, cpu_usage_nanoseconds_total=cpu_ns, **values)


def _cpu_rate(pipeline: Pipeline, t_ns: int, cpu_ns: int, **values: Any) -> float | None:
    points = pipeline.ingest(_batch(t_ns, [_cpu_sample(t_ns, cpu_ns, **values)]), now_ns=t_ns)
    return _one(points, Level.CONTAINER).fields.get(CPU)


# --- the real Docker reads -------------------------------------------------------------------------------


def _read_json(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DOCKER / name).read_text())
    return data


def _parse_ns(rfc3339: str) -> int:
    """Docker's RFC 3339 time to Unix ns (datetime alone would drop the last three digits)."""
    seconds, _, fraction = rfc3339.removesuffix("Z").partition(".")
    whole = datetime.fromisoformat(seconds).replace(tzinfo=UTC)
    return int(whole.timestamp()) * S + int(fraction.ljust(9, "0"))


def _docker_sample(stats: dict[str, Any], inspect: dict[str, Any]) -> ContainerSample:
    """A ContainerSample as a Docker collector would build it from one-shot stats and inspect."""
    cpu = stats["cpu_stats"]
    memory = stats["memory_stats"]
    interfaces = stats["networks"].values()
    labels = inspect["Config"]["Labels"]
    return ContainerSample(
        container_id=stats["id"],
        started_at_ns=_parse_ns(inspect["State"]["StartedAt"]),
        timestamp_ns=_parse_ns(stats["read"]),
        namespace=labels["io.kubernetes.pod.namespace"],
        pod=labels["io.kubernetes.pod.name"],
        container=labels["io.kubernetes.container.name"],
        cpu_usage_nanoseconds_total=cpu["cpu_usage"]["total_usage"],
        cpu_user_nanoseconds_total=cpu["cpu_usage"]["usage_in_usermode"],
        cpu_system_nanoseconds_total=cpu["cpu_usage"]["usage_in_kernelmode"],
        cpu_periods_total=cpu["throttling_data"]["periods"],
        cpu_throttled_periods_total=cpu["throttling_data"]["throttled_periods"],
        cpu_limit_millicores=inspect["HostConfig"]["NanoCpus"] // 1_000_000,
        memory_usage_bytes=memory["usage"],
        memory_rss_bytes=memory["stats"]["total_rss"],
        memory_cache_bytes=memory["stats"]["total_cache"],
        process_count=stats["pids_stats"]["current"],
        network=NetworkCounters(
            rx_bytes_total=sum(interface["rx_bytes"] for interface in interfaces),
            tx_bytes_total=sum(interface["tx_bytes"] for interface in interfaces),
            rx_packets_total=sum(interface["rx_packets"] for interface in interfaces),
            tx_packets_total=sum(interface["tx_packets"] for interface in interfaces),
        ),
    )


def _seconds_between(earlier: str, later: str) -> Decimal:
    """Exact seconds between two RFC 3339 times, computed apart from the pipeline's ns arithmetic."""

    def split(text: str) -> tuple[datetime, Decimal]:
        seconds, _, fraction = text.removesuffix("Z").partition(".")
        return datetime.fromisoformat(seconds), Decimal(f"0.{fraction}")

    (earlier_whole, earlier_fraction), (later_whole, later_fraction) = split(earlier), split(later)
    return Decimal((later_whole - earlier_whole).total_seconds()) + later_fraction - earlier_fraction


def test_two_real_docker_reads_give_the_cpu_rate_of_a_half_cpu_container() -> None:
    first, later = _read_json("stats-oneshot-fx-app.json"), _read_json("stats-oneshot-fx-app-5s-later.json")
    inspect, info = _read_json("inspect-fx-app.json"), _read_json("info.json")
    elapsed = _seconds_between(first["read"], later["read"])
    usage = first["cpu_stats"]["cpu_usage"], later["cpu_stats"]["cpu_usage"]
    expected = float(Decimal(usage[1]["total_usage"] - usage[0]["total_usage"]) / elapsed / 1_000_000)
    expected_user = float(
        Decimal(usage[1]["usage_in_usermode"] - usage[0]["usage_in_usermode"]) / elapsed / 1_000_000
    )
    expected_rx = float(
        Decimal(later["networks"]["eth0"]["rx_bytes"] - first["networks"]["eth0"]["rx_bytes"]) / elapsed
    )
    assert expected == pytest.approx(500, rel=0.01), "the fixture is a container limited to 0.5 CPU"

    node = NodeSample(timestamp_ns=_parse_ns(first["read"]), cpu_capacity_millicores=info["NCPU"] * 1000)
    pipeline = _pipeline()
    scraped = [_parse_ns(first["read"]) // RES * RES, _parse_ns(later["read"]) // RES * RES]
    first_batch = _batch(scraped[0], [_docker_sample(first, inspect)], node_sample=node, batch_id="first")
    later_batch = _batch(scraped[1], [_docker_sample(later, inspect)], node_sample=node, batch_id="later")
    pipeline.ingest(first_batch, now_ns=scraped[0])
    points = pipeline.ingest(later_batch, now_ns=scraped[1])

    container = _one(points, Level.CONTAINER)
    assert container.tags == {
        "cluster": "c1",
        "node": "n1",
        "namespace": "shop",
        "pod": "web-7d9f8b6c5-x2x4q",
        "container": "app",
    }
    assert container.time_ns == scraped[1]
    assert container.fields[CPU] == pytest.approx(expected, rel=1e-12)
    assert container.fields[CPU_USER] == pytest.approx(expected_user, rel=1e-12)
    assert container.fields[RX] == pytest.approx(expected_rx, rel=1e-12)
    # Throttled in 71 of the 71 periods in between: it wants more than its half CPU.
    assert container.fields[THROTTLED] == 1.0
    assert container.fields[catalog.CPU_USAGE_SECONDS_TOTAL.name] == 5.831765152
    assert container.fields[catalog.CPU_LIMIT_MILLICORES.name] == 500.0
    assert container.fields[catalog.MEMORY_USAGE_BYTES.name] == float(later["memory_stats"]["usage"])
    assert catalog.MEMORY_LIMIT_BYTES.name not in container.fields
    assert _one(points, Level.POD).fields[CPU] == container.fields[CPU]


# --- rates: when there is none ---------------------------------------------------------------------------


def test_first_sample_has_gauges_but_no_rate() -> None:
    pipeline = _pipeline()
    points = pipeline.ingest(_batch(T0, [_cpu_sample(T0, 5 * S, memory_usage_bytes=10)]), now_ns=T0)
    fields = _one(points, Level.CONTAINER).fields
    assert CPU not in fields
    assert fields[catalog.MEMORY_USAGE_BYTES.name] == 10.0
    assert fields[catalog.CPU_USAGE_SECONDS_TOTAL.name] == 5.0
    assert pipeline.stats.rates_suppressed["first"] == 1


def test_rate_is_per_second_of_the_samples_own_time_not_the_scrape_time() -> None:
    pipeline = _pipeline()
    pipeline.ingest(_batch(T0, [_cpu_sample(T0 + 2 * S, 0)]), now_ns=T0)
    # Scraped 10 s later, but the samples were read 8 s apart: 2 s of CPU in 8 s is 250 millicores.
    points = pipeline.ingest(_batch(T0 + RES, [_cpu_sample(T0 + RES, 2 * S)]), now_ns=T0 + RES)
    assert _one(points, Level.CONTAINER).fields[CPU] == 250.0


def test_restart_gives_no_rate_and_nothing_negative_then_rates_resume() -> None:
    pipeline = _pipeline()
    assert _cpu_rate(pipeline, T0, 50 * S, started_at_ns=1) is None
    assert _cpu_rate(pipeline, T0 + RES, 1 * S, started_at_ns=T0 + 5 * S) is None
    assert pipeline.stats.rates_suppressed["restart"] == 1
    assert _cpu_rate(pipeline, T0 + 2 * RES, 6 * S, started_at_ns=T0 + 5 * S) == 500.0


def test_counter_reset_gives_no_rate_and_rebases() -> None:
    pipeline = _pipeline()
    _cpu_rate(pipeline, T0, 50 * S)
    assert _cpu_rate(pipeline, T0 + RES, 2 * S) is None
    assert pipeline.stats.rates_suppressed["reset"] == 1
    assert _cpu_rate(pipeline, T0 + 2 * RES, 3 * S) == 100.0


def test_out_of_order_and_duplicate_samples_do_not_corrupt_the_next_rate() -> None:
    pipeline = _pipeline()
    _cpu_rate(pipeline, T0, 0)
    assert _cpu_rate(pipeline, T0 + RES, 1 * S) == 100.0
    # Arrives late: older than the baseline.
    late = _batch(T0 + 5 * S, [_cpu_sample(T0 + 5 * S, S // 2)], batch_id="late")
    assert CPU not in _one(pipeline.ingest(late, now_ns=T0 + RES), Level.CONTAINER).fields
    # Same read time as the baseline, different value (a second source, a clock hiccup).
    dup = _batch(T0 + RES, [_cpu_sample(T0 + RES, 9 * S)], batch_id="dup")
    assert CPU not in _one(pipeline.ingest(dup, now_ns=T0 + RES), Level.CONTAINER).fields
    assert pipeline.stats.rates_suppressed["out_of_order"] == 2
    assert _cpu_rate(pipeline, T0 + 2 * RES, 3 * S) == 200.0


def test_a_resent_batch_is_ignored() -> None:
    pipeline = _pipeline()
    batch = _batch(T0, [_cpu_sample(T0, 0)])
    assert pipeline.ingest(batch, now_ns=T0) != []
    assert pipeline.ingest(batch, now_ns=T0 + S) == []
    assert pipeline.stats.duplicate_batches == 1
    assert pipeline.stats.batches == 1


def test_a_cpu_rate_beyond_the_nodes_capacity_is_dropped_and_counted() -> None:
    pipeline = _pipeline()
    node = NodeSample(timestamp_ns=T0, cpu_capacity_millicores=1000)
    usage = {"cpu_user_nanoseconds_total": 0, "memory_usage_bytes": 5}
    pipeline.ingest(_batch(T0, [_cpu_sample(T0, 0, **usage)], node_sample=node), now_ns=T0)
    # 13 s of CPU in 10 s is 1300 millicores on a one-CPU node: at most 1250 is believable.
    usage["cpu_user_nanoseconds_total"] = 1
    points = pipeline.ingest(
        _batch(T0 + RES, [_cpu_sample(T0 + RES, 13 * S, **usage)], node_sample=node), now_ns=T0 + RES
    )
    fields = _one(points, Level.CONTAINER).fields
    assert not set(CPU_RATES) & set(fields)
    assert fields[catalog.MEMORY_USAGE_BYTES.name] == 5.0
    assert pipeline.stats.rates_suppressed["absurd"] == 1
    assert _cpu_rate(pipeline, T0 + 2 * RES, 25 * S) == 1200.0


def test_a_node_cpu_rate_beyond_its_capacity_is_dropped() -> None:
    pipeline = _pipeline()
    for t, cpu_ns in ((T0, 0), (T0 + RES, 30 * S), (T0 + 2 * RES, 40 * S)):
        node = NodeSample(
            timestamp_ns=t, boot_time_ns=1, cpu_capacity_millicores=2000, cpu_usage_nanoseconds_total=cpu_ns
        )
        points = pipeline.ingest(_batch(t, node_sample=node), now_ns=t)
    assert _one(points, Level.NODE).fields[CPU] == 1000.0
    assert pipeline.stats.rates_suppressed["absurd"] == 1


def test_throttled_ratio_needs_elapsed_periods() -> None:
    pipeline = _pipeline()
    counters = {"cpu_periods_total": 100, "cpu_throttled_periods_total": 10}
    _cpu_rate(pipeline, T0, 0, **counters)
    points = pipeline.ingest(_batch(T0 + RES, [_cpu_sample(T0 + RES, S, **counters)]), now_ns=T0 + RES)
    assert THROTTLED not in _one(points, Level.CONTAINER).fields
    counters = {"cpu_periods_total": 200, "cpu_throttled_periods_total": 35}
    points = pipeline.ingest(
        _batch(T0 + 2 * RES, [_cpu_sample(T0 + 2 * RES, S, **counters)]), now_ns=T0 + 2 * RES
    )
    assert _one(points, Level.CONTAINER).fields[THROTTLED] == 0.25


def test_points_are_written_at_their_buckets_start() -> None:
    pipeline = _pipeline()
    points = pipeline.ingest(_batch(T0 + 7_300_000_000, [_cpu_sample(T0, 0)]), now_ns=T0)
    assert {point.time_ns for point in points} == {T0}


# --- sums up the levels ----------------------------------------------------------------------------------


def _full_container(
    t_ns: int, step: int, *, name: str, pod: str = "web", namespace: str = "shop", **overrides: Any
) -> ContainerSample:
    """A container with every field; counters grow with ``step`` so the second step has every rate."""
    values: dict[str, Any] = {
        "container_id": f"id-{namespace}-{pod}-{name}",
        "started_at_ns": 1,
        "timestamp_ns": t_ns,
        "namespace": namespace,
        "pod": pod,
        "container": name,
        "workload": "web",
        "workload_kind": "Deployment",
        "cpu_usage_nanoseconds_total": step * 3 * S,
        "cpu_user_nanoseconds_total": step * 2 * S,
        "cpu_system_nanoseconds_total": step * S,
        "cpu_periods_total": step * 100,
        "cpu_throttled_periods_total": step * 7,
        "cpu_limit_millicores": 500,
        "cpu_request_millicores": 250,
        "memory_usage_bytes": 1000 + step,
        "memory_working_set_bytes": 900,
        "memory_rss_bytes": 700,
        "memory_cache_bytes": 300,
        "memory_limit_bytes": 4096,
        "memory_request_bytes": 2048,
        "disk_read_bytes_total": step * 10_000,
        "disk_write_bytes_total": step * 20_000,
        "process_count": 3,
        "restart_count": 2,
        "fs_usage_bytes": 50,
        "fs_capacity_bytes": 5000,
        "network": _network(step, 1_000),
    }
    values.update(overrides)
    return ContainerSample(**values)


def _network(step: int, scale: int) -> NetworkCounters:
    return NetworkCounters(
        rx_bytes_total=step * scale * 10,
        tx_bytes_total=step * scale * 20,
        rx_packets_total=step * scale,
        tx_packets_total=step * scale * 2,
        rx_errors_total=step,
        tx_errors_total=step * 2,
        rx_dropped_total=step * 3,
        tx_dropped_total=step * 4,
    )


def _pod(t_ns: int, step: int, *, pod: str = "web", namespace: str = "shop", scale: int = 50) -> PodSample:
    return PodSample(
        namespace=namespace,
        pod=pod,
        pod_id=f"sandbox-{namespace}-{pod}",
        timestamp_ns=t_ns,
        workload="web",
        workload_kind="Deployment",
        network=_network(step, scale),
    )


def _node(t_ns: int, step: int) -> NodeSample:
    return NodeSample(
        timestamp_ns=t_ns,
        boot_time_ns=1,
        cpu_usage_nanoseconds_total=step * 15 * S,
        cpu_capacity_millicores=4000,
        cpu_allocatable_millicores=3800,
        memory_usage_bytes=10**9,
        memory_working_set_bytes=9 * 10**8,
        memory_capacity_bytes=8 * 10**9,
        memory_allocatable_bytes=7 * 10**9,
        network=_network(step, 5_000),
        fs_usage_bytes=10**10,
        fs_capacity_bytes=10**11,
    )


def _node_batch(node: str, step: int, *, offset: int = 0) -> Batch:
    """One node's scrape ``step``: shop/web (3 containers, one without a rate yet), shop/db, ops/agent."""
    t = T0 + step * RES + offset
    containers = [
        _full_container(t, step, name="app"),
        _full_container(t, step, name="sidecar", network=None, memory_limit_bytes=None),
        _full_container(t, step, name="db", pod="db", process_count=None),
        _full_container(t, step, name="agent", pod="agent", namespace="ops", restart_count=0),
    ]
    if step > 1:
        # A container started (step 2) or restarted (step 3) in this scrape: no rates from it, yet its
        # gauges still add up.
        containers.append(
            _full_container(t, 1, name="init", started_at_ns=step, cpu_usage_nanoseconds_total=S)
        )
    pods = [_pod(t, step), _pod(t, step, pod="db", scale=70), _pod(t, step, pod="agent", namespace="ops")]
    return _batch(t, containers, node=node, pods=pods, node_sample=_node(t, step))


def _sum(points: Iterable[Point], name: str) -> float | None:
    values = [point.fields[name] for point in points if name in point.fields]
    return math.fsum(values) if values else None


def _assert_sums(parent: Point, children: Sequence[Point], names: Iterable[str]) -> None:
    assert children, f"{parent} has no children"
    for name in names:
        expected = _sum(children, name)
        if expected is None:
            assert name not in parent.fields
        else:
            assert parent.fields[name] == pytest.approx(expected, rel=1e-12), name


def _ingest_two_nodes_two_steps(pipeline: Pipeline) -> list[Point]:
    points: list[Point] = []
    for step in (1, 2, 3):
        for node in ("n1", "n2"):
            batch = _node_batch(node, step, offset=S if node == "n2" else 0)
            points += pipeline.ingest(batch, now_ns=T0 + step * RES + 2 * S)
        points += pipeline.tick(T0 + step * RES + 2 * S)
    return points


def test_a_pod_is_the_sum_of_its_containers_and_its_network_is_its_own() -> None:
    pipeline = _pipeline()
    pipeline.ingest(_node_batch("n1", 1), now_ns=T0)
    points = pipeline.ingest(_node_batch("n1", 2), now_ns=T0 + RES)

    containers = _of(points, Level.CONTAINER, pod="web")
    pod = _one(points, Level.POD, pod="web")
    assert len(containers) == 3
    _assert_sums(pod, containers, SUMMED_INTO_POD)
    assert pod.fields[CONTAINERS] == 3.0
    # The new container adds its gauges but no rate: the pod's CPU is the other two's 300 millicores.
    assert pod.fields[CPU] == 600.0
    # The sandbox's 50 x 10 bytes per step, not the app container's own 1000 x 10.
    assert pod.fields[RX] == 50.0
    assert pod.tags == {
        "cluster": "c1",
        "node": "n1",
        "namespace": "shop",
        "pod": "web",
        "workload": "web",
        "workload_kind": "Deployment",
    }


def test_a_node_is_its_own_usage_plus_counts_and_the_sums_of_requests_and_limits() -> None:
    pipeline = _pipeline()
    pipeline.ingest(_node_batch("n1", 1), now_ns=T0)
    points = pipeline.ingest(_node_batch("n1", 2), now_ns=T0 + RES)
    node = _one(points, Level.NODE)
    assert node.tags == {"cluster": "c1", "node": "n1"}
    # The node sample's 15 s of CPU per 10 s, not the sum of its containers.
    assert node.fields[CPU] == 1500.0
    assert node.fields[RX] == 5_000.0
    assert node.fields[catalog.MEMORY_USAGE_BYTES.name] == 1e9
    assert node.fields[catalog.CPU_CAPACITY_MILLICORES.name] == 4000.0
    assert node.fields[CONTAINERS] == 5.0
    assert node.fields[PODS] == 3.0
    _assert_sums(node, _of(points, Level.CONTAINER), SUMMED_INTO_NODE)


def test_a_batch_without_a_node_sample_still_has_a_node_point_with_counts() -> None:
    pipeline = _pipeline()
    points = pipeline.ingest(_batch(T0, [_cpu_sample(T0, 0, cpu_request_millicores=100)]), now_ns=T0)
    assert _one(points, Level.NODE).fields == {
        CONTAINERS: 1.0,
        PODS: 1.0,
        catalog.CPU_REQUEST_MILLICORES.name: 100.0,
    }


def test_namespaces_sum_pods_across_nodes_and_the_cluster_sums_nodes() -> None:
    pipeline = _pipeline()
    points = _ingest_two_nodes_two_steps(pipeline)
    for step in (2, 3):
        at = [point for point in points if point.time_ns == T0 + step * RES]
        pods = _of(at, Level.POD)
        for namespace, pod_count in (("shop", 4.0), ("ops", 2.0)):
            # The last emission of a bucket is what InfluxDB keeps.
            rollup = _of(at, Level.NAMESPACE, namespace=namespace)[-1]
            in_namespace = [pod for pod in pods if pod.tags["namespace"] == namespace]
            _assert_sums(rollup, in_namespace, {m.name for m in fields_for(Level.NAMESPACE)} - {PODS})
            assert rollup.fields[PODS] == pod_count
        cluster = _of(at, Level.CLUSTER)[-1]
        _assert_sums(cluster, _of(at, Level.NODE), {m.name for m in fields_for(Level.CLUSTER)} - {NODES})
        assert cluster.fields[NODES] == 2.0
        assert cluster.fields[CPU] == 3000.0


def test_every_level_carries_exactly_the_catalogs_fields_and_tags() -> None:
    points = _ingest_two_nodes_two_steps(_pipeline())
    emitted: dict[str, set[str]] = defaultdict(set)
    for point in points:
        level = Level(point.measurement)
        assert set(point.tags) >= set(catalog.TAGS_BY_LEVEL[level])
        assert set(point.tags) <= set(catalog.tags_for(level))
        assert all(isinstance(value, float) for value in point.fields.values())
        emitted[point.measurement] |= set(point.fields)
    # Both ways: nothing outside the catalog, and every catalog field of every level is really written.
    assert emitted == {level.value: {m.name for m in fields_for(level)} for level in Level}


def _complete_batch(node: str, step: int) -> Batch:
    """A scrape in which every container and pod has every field (the steady state of a kubelet node)."""
    t = T0 + step * RES
    containers = [
        _full_container(t, step * (index + 1), name=f"c{index}", pod=pod, namespace=namespace, network=None)
        for index, (namespace, pod) in enumerate(
            [
                ("shop", "web"),
                ("shop", "web"),
                ("shop", "web"),
                ("shop", "db"),
                ("ops", "agent"),
                ("ops", "agent"),
            ]
        )
    ]
    pods = [
        _pod(t, step, pod=pod, namespace=namespace) for namespace, pod in (("shop", "web"), ("shop", "db"))
    ]
    pods.append(_pod(t, step, pod="agent", namespace="ops", scale=7))
    return _batch(t, containers, node=node, pods=pods, node_sample=_node(t, step))


def test_levels_sum_exactly_when_every_sample_has_every_field() -> None:
    pipeline = _pipeline()
    points: list[Point] = []
    for step in (1, 2, 3):
        for node in ("n1", "n2"):
            points += pipeline.ingest(_complete_batch(node, step), now_ns=T0 + step * RES + S)
        points += pipeline.tick(T0 + step * RES + RES + GRACE)
    at = [point for point in points if point.time_ns == T0 + 3 * RES]
    namespace_fields = {m.name for m in fields_for(Level.NAMESPACE)} - {PODS}
    for node in ("n1", "n2"):
        for pod in ("web", "db", "agent"):
            pod_point = _one(at, Level.POD, node=node, pod=pod)
            assert CPU in pod_point.fields
            _assert_sums(pod_point, _of(at, Level.CONTAINER, node=node, pod=pod), SUMMED_INTO_POD)
            assert pod_point.fields[CONTAINERS] == len(_of(at, Level.CONTAINER, node=node, pod=pod))
        _assert_sums(_one(at, Level.NODE, node=node), _of(at, Level.CONTAINER, node=node), SUMMED_INTO_NODE)
    for namespace, pods in (("shop", 4.0), ("ops", 2.0)):
        namespace_point = _one(at, Level.NAMESPACE, namespace=namespace)
        _assert_sums(namespace_point, _of(at, Level.POD, namespace=namespace), namespace_fields)
        assert namespace_point.fields[PODS] == pods
    cluster = _one(at, Level.CLUSTER)
    _assert_sums(cluster, _of(at, Level.NODE), {m.name for m in fields_for(Level.CLUSTER)} - {NODES})


# --- rollup timing through the pipeline ------------------------------------------------------------------


def test_rollups_wait_for_a_late_node_until_grace_then_re_emit_when_it_comes() -> None:
    pipeline = _pipeline()
    for node in ("n1", "n2"):
        pipeline.ingest(_batch(T0, [_cpu_sample(T0, 0)], node=node), now_ns=T0 + S)
    first = pipeline.tick(T0 + RES + GRACE)
    assert _one(first, Level.CLUSTER).fields[NODES] == 2.0

    t = T0 + RES
    points = pipeline.ingest(_batch(t, [_cpu_sample(t, S)], node="n1"), now_ns=t + S)
    assert _of(points, Level.CLUSTER) == []
    assert pipeline.tick(t + RES + GRACE - 1) == []
    on_grace = pipeline.tick(t + RES + GRACE)
    # Without node samples the nodes have no usage of their own: the CPU is seen on the namespace.
    assert _one(on_grace, Level.NAMESPACE, namespace="shop").fields[CPU] == 100.0
    assert _one(on_grace, Level.CLUSTER).fields == {CONTAINERS: 1.0, PODS: 1.0, NODES: 1.0}

    late = pipeline.ingest(_batch(t, [_cpu_sample(t, 2 * S)], node="n2"), now_ns=t + RES + GRACE + S)
    cluster = _one(late, Level.CLUSTER)
    assert cluster.time_ns == t
    assert cluster.fields == {CONTAINERS: 2.0, PODS: 2.0, NODES: 2.0}
    assert _one(late, Level.NAMESPACE, namespace="shop").fields[CPU] == 300.0
    assert _one(late, Level.NAMESPACE, namespace="shop").fields[PODS] == 2.0
    assert pipeline.stats.rollups_reemitted == 1


def test_a_complete_bucket_is_emitted_by_the_ingest_that_completes_it() -> None:
    pipeline = _pipeline()
    for node in ("n1", "n2"):
        pipeline.ingest(_batch(T0, node=node), now_ns=T0)
    pipeline.tick(T0 + RES + GRACE)
    assert _of(pipeline.ingest(_batch(T0 + RES, node="n2"), now_ns=T0 + RES), Level.CLUSTER) == []
    points = pipeline.ingest(_batch(T0 + RES, node="n1"), now_ns=T0 + RES)
    assert _one(points, Level.CLUSTER).fields[NODES] == 2.0


# --- state ----------------------------------------------------------------------------------------------


def test_expiry_releases_series_not_seen_and_keeps_the_others() -> None:
    pipeline = _pipeline(expiry_ns=60 * S)
    gone = _full_container(T0, 1, name="gone", pod="old")
    pipeline.ingest(
        _batch(T0, [gone, _cpu_sample(T0, 0)], pods=[_pod(T0, 1, pod="old")], node_sample=_node(T0, 1)),
        now_ns=T0,
    )
    assert pipeline.stats.series_tracked == 4
    t = T0 + 50 * S
    pipeline.ingest(_batch(t, [_cpu_sample(t, S)], node="n1"), now_ns=t)
    pipeline.tick(T0 + 60 * S)
    stats = pipeline.stats
    assert (stats.container_series, stats.pod_series, stats.node_series) == (1, 0, 0)
    assert stats.series_expired == 3
    pipeline.tick(T0 + 200 * S)
    assert pipeline.stats.series_tracked == 0
    assert pipeline.stats.rollup_buckets == 0


def test_a_series_points_share_one_tags_dict_until_a_tag_value_changes() -> None:
    pipeline = _pipeline(expiry_ns=60 * S)
    first = pipeline.ingest(_node_batch("n1", 1), now_ns=T0)
    second = pipeline.ingest(_node_batch("n1", 2), now_ns=T0 + RES)
    for level, tags in ((Level.CONTAINER, {"pod": "web", "container": "app"}), (Level.POD, {"pod": "web"})):
        assert _one(second, level, **tags).tags is _one(first, level, **tags).tags

    # The pod's workload label changes: new points carry it, the ones already out keep theirs.
    relabelled = _node_batch("n1", 3)
    relabelled = relabelled.model_copy(
        update={
            "containers": [
                sample.model_copy(update={"workload": "web-v2"}) for sample in relabelled.containers
            ],
            "pods": [sample.model_copy(update={"workload": "web-v2"}) for sample in relabelled.pods],
        }
    )
    third = pipeline.ingest(relabelled, now_ns=T0 + 2 * RES)
    for level, tags in ((Level.CONTAINER, {"pod": "web", "container": "app"}), (Level.POD, {"pod": "web"})):
        assert _one(third, level, **tags).tags["workload"] == "web-v2"
        assert _one(second, level, **tags).tags["workload"] == "web"

    # Expired with the node's series, the tags are built afresh when the node comes back.
    pipeline.tick(T0 + 200 * S)
    again = pipeline.ingest(_node_batch("n1", 4), now_ns=T0 + 200 * S)
    assert (
        _one(again, Level.CONTAINER, pod="web", container="app").tags
        == _one(first, Level.CONTAINER, pod="web", container="app").tags
    )
    assert (
        _one(again, Level.CONTAINER, pod="web", container="app").tags
        is not _one(first, Level.CONTAINER, pod="web", container="app").tags
    )


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="resolution_seconds"):
        Pipeline(cluster="c", resolution_seconds=0, rollup_grace_seconds=1, series_expiry_seconds=1)


# --- property: nothing impossible, whatever arrives ------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    elapsed_ns: int
    cpu_ns: int
    user_share: float
    periods: int
    throttled_share: float
    other: int
    event: str
    """``"run"``, ``"reset"`` (counters drop to zero, same identity) or ``"restart"`` (new identity)."""


_steps = st.builds(
    _Step,
    elapsed_ns=st.integers(1, 30 * S),
    cpu_ns=st.integers(0, 40 * S),
    user_share=st.floats(0, 1),
    periods=st.integers(0, 1_000),
    throttled_share=st.floats(0, 1),
    other=st.integers(0, 10**12),
    event=st.sampled_from(["run", "run", "run", "reset", "restart"]),
)


@dataclass
class _Timeline:
    """The true history the collector read, and the most each CPU counter really grew per second."""

    batches: list[Batch]
    max_millicores: dict[str, float]


def _timeline(steps: list[_Step], capacity: int | None) -> _Timeline:
    t = T0
    started = 1
    counters: dict[str, int] = defaultdict(int)
    peak: dict[str, float] = defaultdict(float)
    batches = []
    for index, step in enumerate(steps):
        t += step.elapsed_ns
        if step.event != "run":
            counters.clear()
        if step.event == "restart":
            started = t
        # Each counter grows by at most this step's CPU (scaled), so its true peak rate is known exactly.
        cpu = min(step.cpu_ns, 4 * step.elapsed_ns)
        user = int(cpu * step.user_share)
        growth = {"a": cpu, "a_user": user, "a_system": cpu - user, "b": cpu // 3, "node": cpu + cpu // 3}
        for name, value in growth.items():
            counters[name] += value
            peak[name] = max(peak[name], value * 1e3 / step.elapsed_ns)
        counters["periods"] += step.periods
        counters["throttled"] += int(step.periods * step.throttled_share)
        counters["other"] += step.other
        network = NetworkCounters(
            rx_bytes_total=counters["other"],
            tx_bytes_total=counters["other"] // 2,
            rx_packets_total=counters["periods"],
        )
        a = _container(
            container_id="a",
            timestamp_ns=t,
            started_at_ns=started,
            cpu_usage_nanoseconds_total=counters["a"],
            cpu_user_nanoseconds_total=counters["a_user"],
            cpu_system_nanoseconds_total=counters["a_system"],
            cpu_periods_total=counters["periods"],
            cpu_throttled_periods_total=counters["throttled"],
            disk_read_bytes_total=counters["other"],
            memory_usage_bytes=counters["other"],
            network=network,
        )
        # No start time: its restarts show only as counters dropping.
        b = _container(
            container_id="b",
            container="b",
            timestamp_ns=t,
            started_at_ns=None,
            cpu_usage_nanoseconds_total=counters["b"],
        )
        pod = PodSample(
            namespace="shop", pod="web", pod_id=f"sandbox-{started}", timestamp_ns=t, network=network
        )
        node = NodeSample(
            timestamp_ns=t,
            boot_time_ns=started,
            cpu_usage_nanoseconds_total=counters["node"],
            cpu_capacity_millicores=capacity,
            network=network,
        )
        batches.append(_batch(t, [a, b], pods=[pod], node_sample=node, batch_id=f"truth-{index}"))
    return _Timeline(batches, dict(peak))


@st.composite
def _deliveries(draw: st.DrawFn) -> tuple[_Timeline, list[int]]:
    steps = draw(st.lists(_steps, min_size=1, max_size=25))
    timeline = _timeline(steps, draw(st.sampled_from([None, 1_000, 4_000])))
    indices = list(range(len(steps)))
    order = draw(
        st.one_of(
            st.just(indices),
            st.permutations(indices),
            st.lists(st.sampled_from(indices), min_size=1, max_size=2 * len(indices)),
        )
    )
    return timeline, order


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_deliveries())
def test_no_emitted_value_is_impossible_whatever_the_order_of_arrival(
    delivery: tuple[_Timeline, list[int]],
) -> None:
    timeline, order = delivery
    pipeline = _pipeline()
    points: list[Point] = []
    now = T0
    for position, index in enumerate(order):
        truth = timeline.batches[index]
        # Resent and shuffled copies get their own batch id, so they reach the rate logic.
        batch = truth.model_copy(update={"batch_id": f"delivery-{position}"})
        now = max(now, batch.scraped_at_ns) + S
        points += pipeline.ingest(batch, now_ns=now)
        points += pipeline.tick(now)
    points += pipeline.tick(now + EXPIRY + 10 * RES)

    for point in points:
        for name, value in point.fields.items():
            assert math.isfinite(value), (point, name)
            assert value >= 0, (point, name)
    bounds = {
        ("container", "app"): (
            timeline.max_millicores["a"],
            timeline.max_millicores["a_user"],
            timeline.max_millicores["a_system"],
        ),
        ("container", "b"): (timeline.max_millicores["b"], 0.0, 0.0),
        ("node", ""): (timeline.max_millicores["node"], 0.0, 0.0),
    }
    for point in points:
        key = (point.measurement, point.tags.get("container", ""))
        if key not in bounds:
            continue
        for name, bound in zip(CPU_RATES, bounds[key], strict=True):
            if name in point.fields:
                assert point.fields[name] <= bound * (1 + 1e-9), (point, name, bound)
        if THROTTLED in point.fields:
            assert point.fields[THROTTLED] <= 1.0
    assert pipeline.stats.series_tracked == 0


def test_kubernetes_pod_totals_replace_the_sum_of_containers_and_feed_the_node() -> None:
    app = _container(cpu_request_millicores=100, memory_request_bytes=64 * 2**20, cpu_limit_millicores=200)
    sidecar = _container(container_id="c-side", container="sidecar", cpu_request_millicores=50)
    # An init container asked for more than the app containers together: Kubernetes reserves that.
    pod = PodSample(
        namespace="shop",
        pod="web",
        pod_id="uid-1",
        timestamp_ns=T0,
        cpu_request_millicores=500,
        memory_request_bytes=128 * 2**20,
    )
    points = _pipeline().ingest(_batch(T0, [app, sidecar], pods=[pod]), now_ns=T0)
    pod_fields = _one(points, Level.POD, pod="web").fields
    assert pod_fields["cpu_request_millicores"] == 500
    assert pod_fields["memory_request_bytes"] == 128 * 2**20
    # No pod total for limits: the containers' sum stands.
    assert pod_fields["cpu_limit_millicores"] == 200
    node_fields = _one(points, Level.NODE).fields
    assert node_fields["cpu_request_millicores"] == 500
    assert node_fields["memory_request_bytes"] == 128 * 2**20

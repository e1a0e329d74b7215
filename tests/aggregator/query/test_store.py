"""The recent-window store: ring wrap, lazy columns, constants, window edge, eviction, bytes per series."""

from __future__ import annotations

import gc
import math
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.catalog import Level, fields_for
from aggregator.points import Point
from aggregator.query.store import RecentStore
from collector.wire import Batch, NodeSample, PodSample

S = 1_000_000_000
RES = 10 * S
T0 = 1_700_000_000 * S
CPU = "cpu_usage_millicores"
MEM = "memory_working_set_bytes"
LIMIT = "memory_limit_bytes"
ENTITY = ("c1", "ns", "pod", "app")


def container(t_ns: int, fields: dict[str, float], *, node: str = "n1", pod: str = "pod") -> Point:
    tags = {"cluster": "c1", "node": node, "namespace": "ns", "pod": pod, "container": "app"}
    return Point("container", tags, fields, t_ns)


def store(window_buckets: int = 6, eviction_s: float = 3600) -> RecentStore:
    return RecentStore(resolution_seconds=10, window_seconds=10 * window_buckets, eviction_seconds=eviction_s)


def bucket(i: int) -> int:
    return T0 + i * RES


def test_a_point_is_read_back_at_its_bucket_start() -> None:
    recent = store()
    recent.add([container(bucket(0) + 3 * S, {CPU: 250.0, MEM: 1e6})], now_ns=bucket(0))

    assert recent.points(Level.CONTAINER, ENTITY, CPU, bucket(0), bucket(1)) == [(bucket(0), 250.0)]
    assert recent.span() == (bucket(0), bucket(0))


def test_columns_exist_only_for_fields_the_series_has_and_the_api_serves() -> None:
    recent = store()
    recent.add([container(bucket(0), {CPU: 1.0, "cpu_throttled_ratio": 0.5})], now_ns=bucket(0))

    assert recent.fields_present(Level.CONTAINER, ENTITY) == [CPU]
    assert recent.points(Level.CONTAINER, ENTITY, "cpu_throttled_ratio", 0, bucket(9)) == []
    series = recent._series[Level.CONTAINER][ENTITY]
    assert sum(column is not None for column in series.columns) == 1


def test_the_ring_wraps_and_keeps_exactly_the_last_window() -> None:
    recent = store(window_buckets=6)
    for i in range(15):
        recent.add([container(bucket(i), {CPU: float(i)})], now_ns=bucket(i))

    got = recent.points(Level.CONTAINER, ENTITY, CPU, 0, bucket(100))
    assert got == [(bucket(i), float(i)) for i in range(9, 15)]
    assert recent.span() == (bucket(9), bucket(14))


def test_the_window_boundary_is_inclusive_of_the_oldest_bucket_held_and_late_points_are_ignored() -> None:
    recent = store(window_buckets=6)
    for i in range(10):
        recent.add([container(bucket(i), {CPU: float(i)})], now_ns=bucket(i))

    # Bucket 4 is the oldest of the six held; bucket 3 went out of the window.
    assert recent.points(Level.CONTAINER, ENTITY, CPU, bucket(4), bucket(4)) == [(bucket(4), 4.0)]
    assert recent.points(Level.CONTAINER, ENTITY, CPU, bucket(3), bucket(3)) == []
    recent.add([container(bucket(3), {CPU: 33.0})], now_ns=bucket(10))
    assert recent.points(Level.CONTAINER, ENTITY, CPU, bucket(3), bucket(3)) == []
    assert recent.stats().points_ignored == 1
    # A late point still inside the window is taken.
    recent.add([container(bucket(5), {CPU: 55.0})], now_ns=bucket(10))
    assert recent.points(Level.CONTAINER, ENTITY, CPU, bucket(5), bucket(5)) == [(bucket(5), 55.0)]


def test_a_series_that_stopped_is_not_read_past_the_window_even_without_being_overwritten() -> None:
    recent = store(window_buckets=6)
    recent.add([container(bucket(0), {CPU: 1.0})], now_ns=bucket(0))
    for i in range(1, 8):
        recent.add([container(bucket(i), {CPU: 2.0}, pod="other")], now_ns=bucket(i))

    assert recent.points(Level.CONTAINER, ENTITY, CPU, 0, bucket(100)) == []
    assert set(recent.latest(Level.CONTAINER, [CPU], not_before_ns=0)) == {("c1", "ns", "other", "app")}


def test_a_constant_costs_no_ring_until_it_changes_or_goes_missing() -> None:
    recent = store(window_buckets=6)
    for i in range(4):
        recent.add([container(bucket(i), {CPU: float(i), LIMIT: 512.0})], now_ns=bucket(i))
    series = recent._series[Level.CONTAINER][ENTITY]
    assert not hasattr(series.columns[recent.fields.index(LIMIT)], "typecode")

    recent.add([container(bucket(4), {CPU: 4.0})], now_ns=bucket(4))  # the limit went away
    recent.add([container(bucket(5), {CPU: 5.0, LIMIT: 1024.0})], now_ns=bucket(5))

    assert hasattr(series.columns[recent.fields.index(LIMIT)], "typecode")
    assert recent.points(Level.CONTAINER, ENTITY, LIMIT, 0, bucket(9)) == [
        (bucket(0), 512.0),
        (bucket(1), 512.0),
        (bucket(2), 512.0),
        (bucket(3), 512.0),
        (bucket(5), 1024.0),
    ]


def test_a_second_point_for_a_bucket_merges_field_by_field_as_influxdb_does() -> None:
    recent = store()
    recent.add([container(bucket(0), {CPU: 1.0, MEM: 10.0})], now_ns=bucket(0))
    recent.add([container(bucket(0), {CPU: 2.0})], now_ns=bucket(0))

    assert recent.points(Level.CONTAINER, ENTITY, CPU, 0, bucket(1)) == [(bucket(0), 2.0)]
    assert recent.points(Level.CONTAINER, ENTITY, MEM, 0, bucket(1)) == [(bucket(0), 10.0)]


def test_non_finite_values_are_no_values() -> None:
    recent = store()
    recent.add([container(bucket(0), {CPU: math.nan, MEM: math.inf})], now_ns=bucket(0))

    assert recent.fields_present(Level.CONTAINER, ENTITY) == []


def test_an_entity_on_two_nodes_is_summed_per_bucket() -> None:
    recent = store()
    recent.add(
        [container(bucket(0), {CPU: 1.0}, node="n1"), container(bucket(0), {CPU: 2.0}, node="n2")],
        now_ns=bucket(0),
    )
    recent.add([container(bucket(1), {CPU: 5.0}, node="n2")], now_ns=bucket(1))

    assert recent.points(Level.CONTAINER, ENTITY, CPU, 0, bucket(9)) == [(bucket(0), 3.0), (bucket(1), 5.0)]
    assert recent.latest(Level.CONTAINER, [CPU], not_before_ns=0)[ENTITY].values == (5.0,)


def test_points_far_ahead_of_the_clock_do_not_push_everything_out_of_the_window() -> None:
    recent = store(window_buckets=6)
    recent.add([container(bucket(0), {CPU: 1.0})], now_ns=bucket(0))
    recent.add([container(bucket(1000), {CPU: 9.0})], now_ns=bucket(0))

    assert recent.points(Level.CONTAINER, ENTITY, CPU, 0, bucket(2000)) == [(bucket(0), 1.0)]
    assert recent.stats().points_ignored == 1


def test_latest_is_the_newest_bucket_with_every_field_asked() -> None:
    recent = store()
    recent.add([container(bucket(0), {CPU: 1.0, MEM: 10.0})], now_ns=bucket(0))
    recent.add([container(bucket(1), {MEM: 11.0})], now_ns=bucket(1))

    found = recent.latest(Level.CONTAINER, [CPU, MEM], not_before_ns=0)[ENTITY]
    assert (found.time_ns, found.values) == (bucket(0), (1.0, 10.0))
    assert recent.latest(Level.CONTAINER, [CPU, MEM], not_before_ns=bucket(1)) == {}


def test_series_and_labels_not_updated_for_the_eviction_time_are_dropped() -> None:
    recent = store(window_buckets=6, eviction_s=60)
    recent.add([container(bucket(0), {CPU: 1.0}, pod="gone")], now_ns=bucket(0))
    recent.add_labels(
        Batch(
            batch_id="b",
            node="n1",
            source="docker",
            scraped_at_ns=bucket(0),
            interval_seconds=10,
            node_sample=NodeSample(timestamp_ns=bucket(0), labels={"zone": "a"}),
            pods=[
                PodSample(namespace="ns", pod="gone", pod_id="x", timestamp_ns=bucket(0), labels={"a": "b"})
            ],
        )
    )
    assert recent.pod_labels("ns", "gone") == {"a": "b"}
    for i in range(1, 8):
        recent.add([container(bucket(i), {CPU: 1.0})], now_ns=bucket(i))

    assert not recent.has(Level.CONTAINER, ("c1", "ns", "gone", "app"))
    assert recent.has(Level.CONTAINER, ENTITY)
    assert recent.pod_labels("ns", "gone") == {}
    assert recent.node_labels("n1") == {}
    assert recent.stats().evicted == 1


def test_evicting_one_node_of_a_two_node_entity_keeps_the_other() -> None:
    recent = store(window_buckets=6, eviction_s=30)
    recent.add(
        [container(bucket(0), {CPU: 1.0}, node="n1"), container(bucket(0), {CPU: 2.0}, node="n2")],
        now_ns=bucket(0),
    )
    for i in range(1, 6):
        recent.add([container(bucket(i), {CPU: 2.0}, node="n2")], now_ns=bucket(i))

    assert recent.evict(bucket(6)) == 0  # already swept while adding
    assert [series.node for series in recent._series[Level.CONTAINER][ENTITY].chain()] == ["n2"]


_writes = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=30),  # bucket
        st.dictionaries(
            st.sampled_from([CPU, MEM, LIMIT]),
            st.sampled_from([0.0, 1.0, 2.0, 512.0]),
            max_size=3,
        ),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_writes)
def test_the_store_reads_back_what_a_plain_dict_model_says(
    writes: list[tuple[int, dict[str, float]]],
) -> None:
    """Against a trivially correct model: bucket -> merged fields, windowed by the newest bucket."""
    capacity = 5
    recent = store(window_buckets=capacity)
    model: dict[int, dict[str, float]] = {}
    newest = -1
    for index, fields in writes:
        # Both learn the window from what arrived before this point.
        if index > newest - capacity:
            model.setdefault(index, {}).update(fields)
        newest = max(newest, index)
        recent.add([container(bucket(index), fields)], now_ns=bucket(newest))
    for field in (CPU, MEM, LIMIT):
        expected = [
            (bucket(index), values[field])
            for index, values in sorted(model.items())
            if index > newest - capacity and field in values
        ]
        assert recent.points(Level.CONTAINER, ENTITY, field, 0, bucket(100)) == expected, field


DOCKER_CONTAINER_FIELDS = {
    # Varying every bucket: each becomes a ring of 90 floats.
    "cpu_usage_millicores": 1.0,
    "memory_usage_bytes": 1.0,
    "memory_working_set_bytes": 1.0,
    "memory_rss_bytes": 1.0,
    "memory_cache_bytes": 1.0,
    "network_rx_bytes_per_second": 1.0,
    "network_tx_bytes_per_second": 1.0,
    "disk_read_bytes_per_second": 1.0,
    "disk_write_bytes_per_second": 1.0,
    # Constant while the container lives: a constant, no ring.
    "memory_limit_bytes": 0.0,
    "network_rx_errors_per_second": 0.0,
    "network_tx_errors_per_second": 0.0,
}
"""What a Docker container point carries of the served fields (1.0: varies every bucket, 0.0: constant)."""


def _bytes_per_container(fields: dict[str, float], containers: int = 400) -> tuple[float, RecentStore]:
    window_buckets = 90  # 15 minutes at 10 s
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        recent = RecentStore(resolution_seconds=10, window_seconds=900, eviction_seconds=900)
        for i in range(window_buckets + 5):
            points = []
            for c in range(containers):
                tags = {
                    "cluster": "prod",
                    "node": f"node-{c % 20:02d}",
                    "namespace": f"team-{c % 8}",
                    # Fresh strings every scrape, as every decoded batch has: the store keeps one copy.
                    "pod": f"web-{c // 2:04d}-7d9f8c6b5-x2k4q",
                    "container": f"app-{c % 2}",
                }
                values = {name: 1e6 + c + (i * 7.3 if varies else 0.0) for name, varies in fields.items()}
                points.append(Point("container", tags, values, bucket(i)))
            recent.add(points, now_ns=bucket(i))
            del points
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert recent.stats().series == containers
    return held / containers, recent


def test_bytes_per_container_series_with_a_full_window() -> None:
    """tracemalloc over 400 containers, 15 minutes at 10 s: a Docker container, and every served field."""
    docker, recent = _bytes_per_container(DOCKER_CONTAINER_FIELDS)
    sample = ("prod", "team-0", "web-0000-7d9f8c6b5-x2k4q", "app-0")
    assert len(recent.fields_present(Level.CONTAINER, sample)) == len(DOCKER_CONTAINER_FIELDS)
    every = dict.fromkeys(
        (name for name in recent.fields if name in {m.name for m in fields_for(Level.CONTAINER)}), 1.0
    )
    worst, _ = _bytes_per_container(every)
    print(
        f"\nbytes per container series, 15 min at 10 s: Docker container {docker:.0f} "
        f"({len(DOCKER_CONTAINER_FIELDS)} fields), "
        f"every served field varying {worst:.0f} ({len(every)} fields)"
    )
    assert docker <= 10 * 1024, f"{docker:.0f} bytes per Docker container series (target: 10 KiB)"
    assert worst <= 20 * 1024, f"{worst:.0f} bytes per container series with every field varying"

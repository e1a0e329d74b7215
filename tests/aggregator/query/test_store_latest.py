"""The store's latest-value index: what ``latest`` answers for metrics.k8s.io's fields without searching the
window, kept right through merges, late points, entities on two nodes and eviction."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.catalog import Level
from aggregator.query.store import LATEST_FIELDS, RecentStore
from tests.aggregator.query.test_store import CPU, ENTITY, MEM, bucket, container, held, store


def test_the_indexed_fields_are_metrics_k8s_io_cpu_and_memory() -> None:
    assert LATEST_FIELDS == (CPU, MEM)


def test_a_merge_can_complete_the_newest_bucket_and_a_late_point_never_replaces_it() -> None:
    recent = store(window_buckets=10)
    recent.add([container(bucket(5), {CPU: 1.0, MEM: 10.0})], now_ns=bucket(5))
    recent.add([container(bucket(6), {CPU: 2.0})], now_ns=bucket(6))
    assert recent.latest(Level.CONTAINER, LATEST_FIELDS, not_before_ns=0) == {
        ENTITY: (bucket(5), (1.0, 10.0))
    }

    recent.add([container(bucket(6), {MEM: 20.0})], now_ns=bucket(6))  # the rest of bucket 6
    assert recent.latest(Level.CONTAINER, LATEST_FIELDS, not_before_ns=0) == {
        ENTITY: (bucket(6), (2.0, 20.0))
    }

    recent.add([container(bucket(6), {CPU: 3.0})], now_ns=bucket(6))  # bucket 6 again: merged
    recent.add([container(bucket(3), {CPU: 9.0, MEM: 90.0})], now_ns=bucket(7))  # late
    assert recent.latest(Level.CONTAINER, LATEST_FIELDS, not_before_ns=0) == {
        ENTITY: (bucket(6), (3.0, 20.0))
    }
    assert recent.latest(Level.CONTAINER, LATEST_FIELDS, not_before_ns=bucket(6) + 1) == {}


def test_the_index_holds_exactly_what_the_window_gives_back_whether_fields_are_rings_or_constants() -> None:
    # CPU changes every bucket (a float32 ring, where 0.1 * i is not exact); memory either changes (a
    # float64 ring) or keeps one value (a constant); other rings and constants lie between them in a row.
    usage, limit = "memory_usage_bytes", "memory_limit_bytes"
    for memory, kinds in (
        ((1e9 + 3, 1e9 + 5, 1e9 + 7, 1e9 + 9), {CPU: "float32", MEM: "float64"}),
        ((1e9 + 3,) * 4, {CPU: "float32", MEM: "constant"}),
    ):
        recent = store(window_buckets=10)
        for i, mem in enumerate(memory):
            fields = {CPU: 0.1 * (i + 1), usage: 2e9 + i, MEM: mem, limit: 4e9}
            recent.add([container(bucket(i), fields)], now_ns=bucket(i))
            index = recent.latest(Level.CONTAINER, LATEST_FIELDS, not_before_ns=0)
            window = tuple(
                recent.points(Level.CONTAINER, ENTITY, name, bucket(i), bucket(i))[0][1]
                for name in LATEST_FIELDS
            )
            assert index == {ENTITY: (bucket(i), window)}
        assert held(recent, ENTITY) == {**kinds, usage: "float64", limit: "constant"}
        assert window[0] != 0.4
        assert window[0] == pytest.approx(0.4, rel=2**-24)
        assert window[1] == memory[-1]


def test_an_entity_on_two_nodes_sums_only_the_nodes_at_its_newest_complete_bucket() -> None:
    recent = store(window_buckets=10)
    recent.add(
        [
            container(bucket(0), {CPU: 1.0, MEM: 10.0}, node="n1"),
            container(bucket(0), {CPU: 2.0, MEM: 20.0}, node="n2"),
        ],
        now_ns=bucket(0),
    )
    assert recent.latest(Level.CONTAINER, LATEST_FIELDS, not_before_ns=0) == {
        ENTITY: (bucket(0), (3.0, 30.0))
    }

    recent.add([container(bucket(1), {CPU: 4.0, MEM: 40.0}, node="n2")], now_ns=bucket(1))
    assert recent.latest(Level.CONTAINER, LATEST_FIELDS, not_before_ns=0) == {
        ENTITY: (bucket(1), (4.0, 40.0))
    }


def test_a_series_evicted_and_seen_again_does_not_bring_back_its_old_latest_value() -> None:
    recent = store(window_buckets=60, eviction_s=30)
    recent.add([container(bucket(0), {CPU: 1.0, MEM: 10.0})], now_ns=bucket(0))
    other = ("c1", "ns", "other", "app")
    for i in range(1, 6):
        recent.add([container(bucket(i), {CPU: 1.0, MEM: 1.0}, pod="other")], now_ns=bucket(i))
    assert set(recent.latest(Level.CONTAINER, LATEST_FIELDS, not_before_ns=0)) == {other}

    # Back, but without memory yet: nothing complete since it returned.
    recent.add([container(bucket(6), {CPU: 5.0})], now_ns=bucket(6))
    assert set(recent.latest(Level.CONTAINER, LATEST_FIELDS, not_before_ns=0)) == {other}


def test_evicting_one_node_of_an_entity_removes_its_part_of_the_latest_value() -> None:
    recent = store(window_buckets=60, eviction_s=30)
    for i in range(3):
        recent.add(
            [
                container(bucket(i), {CPU: 1.0, MEM: 10.0}, node="n1"),
                container(bucket(i), {CPU: 2.0, MEM: 20.0}, node="n2"),
            ],
            now_ns=bucket(i),
        )
    # n1 stops; n2 goes on but without memory, so its newest complete bucket stays 2.
    for i in range(3, 7):
        recent.add([container(bucket(i), {CPU: 2.0}, node="n2")], now_ns=bucket(i))
    assert recent.latest(Level.CONTAINER, LATEST_FIELDS, not_before_ns=0) == {
        ENTITY: (bucket(2), (2.0, 20.0))
    }


_node_writes = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=25),  # bucket
        st.sampled_from(["n1", "n2"]),
        st.dictionaries(st.sampled_from([CPU, MEM]), st.sampled_from([1.0, 2.0, 64.0]), max_size=2),
    ),
    max_size=50,
)


@settings(max_examples=300, deadline=None)
@given(_node_writes, st.integers(min_value=0, max_value=25))
def test_the_index_answers_what_searching_the_window_answers(
    writes: list[tuple[int, str, dict[str, float]]], not_before: int
) -> None:
    """The same question asked in another field order is answered by searching the window, and both agree
    with a plain model: per node, bucket -> merged fields."""
    capacity = 8
    recent = RecentStore(resolution_seconds=10, window_seconds=10 * capacity, eviction_seconds=3600)
    model: dict[str, dict[int, dict[str, float]]] = {"n1": {}, "n2": {}}
    newest = -1
    for index, node, fields in writes:
        if index > newest - capacity:
            model[node].setdefault(index, {}).update(fields)
        newest = max(newest, index)
        recent.add([container(bucket(index), fields, node=node)], now_ns=bucket(newest))

    indexed = recent.latest(Level.CONTAINER, LATEST_FIELDS, not_before_ns=bucket(not_before))
    searched = recent.latest(Level.CONTAINER, (MEM, CPU), not_before_ns=bucket(not_before))
    assert {entity: (time_ns, values[::-1]) for entity, (time_ns, values) in searched.items()} == indexed

    low = max(newest - capacity + 1, not_before)
    tops = {}
    for node, buckets in model.items():
        complete = [i for i, values in buckets.items() if i >= low and CPU in values and MEM in values]
        if complete:
            tops[node] = max(complete)
    if not tops:
        assert indexed == {}
        return
    best = max(tops.values())
    at_best = [model[node][best] for node, top in tops.items() if top == best]
    expected = (sum(values[CPU] for values in at_best), sum(values[MEM] for values in at_best))
    assert indexed == {ENTITY: (bucket(best), expected)}

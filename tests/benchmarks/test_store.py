"""The store benchmark at a tiny size: it measures a store that really answers, never a timing."""

from __future__ import annotations

from benchmarks.store import add_measures, pod_usage_measures


def test_the_query_measure_sees_every_pod_and_the_add_measure_counts_bytes() -> None:
    by_name = {measure.name: measure for measure in pod_usage_measures(nodes=2, queries=2)}
    items = by_name["query.store.pod_usage.pods60.items"]
    assert items.value == 60
    assert items.met
    added = {measure.name: measure.value for measure in add_measures(nodes=2, rounds=2)}
    assert added["query.store.n2.add_cpu_us_per_container"] > 0
    assert 0 < added["query.store.n2.bytes_per_container"] < 64

"""The aggregator's garbage-collector thresholds keep collections out of a large metrics.k8s.io list."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from aggregator.gc_tuning import MIDDLE_THRESHOLD, OLD_THRESHOLD, YOUNG_THRESHOLD, tune_garbage_collector
from aggregator.query.service import QueryService
from benchmarks import ingest as bench_ingest
from benchmarks import store as bench_store

NODES = 100
"""3,000 pods, 6,000 containers: enough allocations for CPython's defaults to collect many times."""


@pytest.fixture
def restored_thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


@pytest.fixture(scope="module")
def service() -> QueryService:
    store = bench_ingest.bench_store()
    rounds = bench_store.produced_rounds(NODES, 3)
    for fed in rounds:
        bench_store.feed(store, fed)
    now_ns = rounds[-1].now_ns
    return QueryService(store, cluster="bench", clock_ns=lambda: now_ns)


def _collections_during_pod_usage(service: QueryService) -> tuple[int, int]:
    """(collections of any generation, pods) while listing every pod once."""
    collections = 0

    def count(phase: str, info: dict[str, Any]) -> None:
        nonlocal collections
        if phase == "start":
            collections += 1

    gc.collect()
    gc.callbacks.append(count)
    try:
        pods = len(service.pod_usage())
    finally:
        gc.callbacks.remove(count)
    return collections, pods


def test_tuning_sets_the_documented_thresholds_and_returns_the_old_ones(restored_thresholds: None) -> None:
    gc.set_threshold(700, 10, 10)
    assert tune_garbage_collector() == (700, 10, 10)
    assert gc.get_threshold() == (YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)


def test_a_full_pod_list_runs_at_most_one_collection_instead_of_dozens(
    service: QueryService, restored_thresholds: None
) -> None:
    gc.set_threshold(700, 10, 10)
    with_defaults, pods = _collections_during_pod_usage(service)
    assert pods == NODES * 30
    tune_garbage_collector()
    tuned, pods = _collections_during_pod_usage(service)
    assert pods == NODES * 30
    assert with_defaults >= 10, f"the defaults collected only {with_defaults} times: the list is too small"
    assert tuned <= 1, f"{tuned} collections during one list with the aggregator's thresholds"

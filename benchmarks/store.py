"""The query window in-process: ``RecentStore.add`` CPU per container sample, and the store + service part of
``kubectl top pods -A`` (``QueryService.pod_usage``) with many pods tracked, without HTTP or JSON.

Points come from the real ``Pipeline`` over a :class:`SyntheticCluster` (30 pods x 2 containers per node),
produced before anything is timed, so only the store (or the query) is measured. CPU is
``time.process_time()``; the query is also timed by the wall clock, the figure a caller waits, with the
garbage collector on (its pauses are part of what a caller waits for).
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from dataclasses import dataclass

import orjson

from aggregator.api.pod_list_view import PodListView
from aggregator.gc_tuning import tune_garbage_collector
from aggregator.points import Point
from aggregator.query.selector import EVERYTHING
from aggregator.query.service import QueryService
from aggregator.query.store import RecentStore
from benchmarks.ingest import (
    INTERVAL_SECONDS,
    WARM_UP_ROUNDS,
    bench_pipeline,
    bench_store,
    round_time_ns,
)
from benchmarks.report import Measure, percentile
from benchmarks.synthetic import SyntheticCluster
from collector.wire import Batch

_NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class ProducedRound:
    """One scrape round of the whole cluster and the points the pipeline made of it."""

    now_ns: int
    batches: list[Batch]
    points: list[list[Point]]
    """One list per ``store.add`` call, as the ingest route and the tick make them."""


def produced_rounds(nodes: int, count: int) -> list[ProducedRound]:
    """``count`` rounds of a ``nodes``-node cluster through a real pipeline (untimed)."""
    cluster = SyntheticCluster(nodes=nodes, interval_seconds=INTERVAL_SECONDS)
    pipeline = bench_pipeline()
    rounds = []
    for index in range(count):
        now_ns = round_time_ns(index) + _NS_PER_S
        batches = cluster.scrape(scraped_at_ns=round_time_ns(index))
        points = [pipeline.ingest(batch, now_ns=now_ns) for batch in batches]
        points.append(pipeline.tick(now_ns + 6 * _NS_PER_S))
        rounds.append(ProducedRound(now_ns, batches, points))
    return rounds


def feed(store: RecentStore, round_: ProducedRound) -> None:
    """Add one round to ``store`` as the ingest route and the tick do: its points, then its labels."""
    for points in round_.points:
        store.add(points, now_ns=round_.now_ns)
    for batch in round_.batches:
        store.add_labels(batch)


def add_measures(*, nodes: int, rounds: int) -> list[Measure]:
    """CPU of ``RecentStore.add`` per container sample in steady state (after the warm-up rounds), and the
    bytes the store holds per container (its ring buffers are allocated whole, so a short run counts all)."""
    produced = produced_rounds(nodes, WARM_UP_ROUNDS + rounds)
    containers = sum(len(batch.containers) for batch in produced[0].batches)
    points = sum(len(batch) for batch in produced[-1].points)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = bench_store()
        for warm_up in produced[:WARM_UP_ROUNDS]:
            feed(store, warm_up)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    cpu = 0.0
    for timed in produced[WARM_UP_ROUNDS:]:
        started = time.process_time()
        for batch_points in timed.points:
            store.add(batch_points, now_ns=timed.now_ns)
        cpu += time.process_time() - started
    prefix = f"query.store.n{nodes}"
    return [
        Measure(f"{prefix}.add_cpu_us_per_container", cpu / (rounds * containers) * 1e6, "us"),
        Measure(f"{prefix}.add_cpu_us_per_point", cpu / (rounds * points) * 1e6, "us"),
        Measure(f"{prefix}.add_cores_at_10s", cpu / rounds / INTERVAL_SECONDS, "cores"),
        Measure(f"{prefix}.bytes_per_container", held / containers / 1024, "KiB"),
    ]


def pod_usage_measures(*, nodes: int, queries: int) -> list[Measure]:
    """``QueryService.pod_usage()`` (every pod, no selector) over a store holding ``nodes`` x 30 pods."""
    store = bench_store()
    produced = produced_rounds(nodes, 3)
    now_ns = produced[-1].now_ns
    for fed in produced:
        feed(store, fed)
    service = QueryService(store, cluster="bench", clock_ns=lambda: now_ns)
    # Only what a server keeps stays: the store (garbage collections walk every object held).
    del produced, fed
    gc.collect()
    # The thresholds python -m aggregator sets (aggregator/gc_tuning.py), then CPython's defaults.
    defaults = tune_garbage_collector()
    try:
        walls, cpus, pods = _time_queries(service, queries)
    finally:
        gc.set_threshold(*defaults)
    _, cpus_default_gc, _ = _time_queries(service, queries)
    # The same queries with the garbage collector paused: how much of the time its full collections take.
    gc.disable()
    try:
        _, cpus_without_gc, _ = _time_queries(service, queries)
    finally:
        gc.enable()
    prefix = f"query.store.pod_usage.pods{nodes * 30}"
    return [
        Measure(f"{prefix}.items", pods, "pods", nodes * 30, "min"),
        Measure(f"{prefix}.p50_ms", percentile(walls, 0.5), "ms"),
        Measure(f"{prefix}.p99_ms", percentile(walls, 0.99), "ms"),
        Measure(f"{prefix}.cpu_p50_ms", percentile(cpus, 0.5), "ms"),
        Measure(f"{prefix}.cpu_p50_ms_default_gc", percentile(cpus_default_gc, 0.5), "ms"),
        Measure(f"{prefix}.cpu_p50_ms_gc_paused", percentile(cpus_without_gc, 0.5), "ms"),
    ]


def pod_view_measures(*, nodes: int, rounds: int) -> list[Measure]:
    """metrics.k8s.io's pod-list view (``PodListView``) over ``nodes`` x 30 pods, in-process: the list that
    builds it, what it adds to each batch while active, and lists from it right after a round landed."""
    produced = produced_rounds(nodes, WARM_UP_ROUNDS + rounds)
    store = bench_store()
    clock_ns = produced[0].now_ns
    service = QueryService(store, cluster="bench", clock_ns=lambda: clock_ns)
    view = PodListView(service, idle_seconds=3600)
    for fed in produced[:WARM_UP_ROUNDS]:
        clock_ns = fed.now_ns
        feed(store, fed)
    gc.collect()
    defaults = tune_garbage_collector()
    try:
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        view.pods_list(namespace=None, selector=EVERYTHING)
        first_wall, first_cpu = time.perf_counter() - wall_started, time.process_time() - cpu_started
        note_cpu = 0.0
        samples = 0
        walls: list[float] = []
        cpus: list[float] = []
        for fed in produced[WARM_UP_ROUNDS:]:
            clock_ns = fed.now_ns
            # As the ingest route does: each batch's points and labels, then the view re-renders its pods.
            for batch, points in zip(fed.batches, fed.points, strict=False):
                store.add(points, now_ns=fed.now_ns)
                store.add_labels(batch)
                started = time.process_time()
                view.note(batch)
                note_cpu += time.process_time() - started
                samples += len(batch.containers)
            store.add(fed.points[-1], now_ns=fed.now_ns)  # the tick's
            cpu_started, wall_started = time.process_time(), time.perf_counter()
            body = view.pods_list(namespace=None, selector=EVERYTHING)
            walls.append((time.perf_counter() - wall_started) * 1000)
            cpus.append((time.process_time() - cpu_started) * 1000)
            pods = len(orjson.loads(body)["items"])
    finally:
        gc.set_threshold(*defaults)
    prefix = f"query.store.pod_view.pods{nodes * 30}"
    return [
        Measure(f"{prefix}.first_list_cpu_ms", first_cpu * 1000, "ms"),
        Measure(f"{prefix}.first_list_ms", first_wall * 1000, "ms"),
        Measure(f"{prefix}.note_cpu_us_per_container", note_cpu / max(1, samples) * 1e6, "us"),
        Measure(f"{prefix}.items", pods, "pods", nodes * 30, "min"),
        Measure(f"{prefix}.list_after_round_p50_ms", percentile(walls, 0.5), "ms"),
        Measure(f"{prefix}.list_after_round_cpu_p50_ms", percentile(cpus, 0.5), "ms"),
    ]


def _time_queries(service: QueryService, queries: int) -> tuple[list[float], list[float], int]:
    """Wall and CPU ms of ``queries`` calls of ``pod_usage()``, and how many pods the last one returned."""
    walls: list[float] = []
    cpus: list[float] = []
    pods = 0
    for _ in range(queries):
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        pods = len(service.pod_usage())
        walls.append((time.perf_counter() - wall_started) * 1000)
        cpus.append((time.process_time() - cpu_started) * 1000)
    return walls, cpus, pods

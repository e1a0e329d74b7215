"""In-process aggregator ingest: synthetic batches through ``Pipeline.ingest`` into the query window and a
``MemorySink``, measuring throughput, CPU and memory per tracked container; the growth fit reuses it.

What is timed is exactly what the ingest route does after validation: ``pipeline.ingest``, the recent
store's ``add`` and ``add_labels``, ``sink.write``, and a ``tick`` per scrape round.
"""

from __future__ import annotations

import gc
import resource
import time
import tracemalloc
from dataclasses import dataclass

from aggregator.gc_tuning import tune_garbage_collector
from aggregator.pipeline import Pipeline
from aggregator.query.store import RecentStore
from aggregator.sinks.memory import MemorySink
from benchmarks.report import Measure
from benchmarks.synthetic import SyntheticCluster
from collector.wire import Batch

INTERVAL_SECONDS = 10.0
WINDOW_SECONDS = 900.0
_NS_PER_S = 1_000_000_000
_T0_NS = 1_763_000_000 * _NS_PER_S
WARM_UP_ROUNDS = 3


@dataclass(frozen=True, slots=True)
class IngestRun:
    """One size's results: throughput and CPU of the timed rounds, memory from a traced run."""

    nodes: int
    containers: int
    samples_per_second: float
    cpu_seconds_per_round: float
    """CPU seconds the process spent per scrape round of the whole cluster (all threads)."""
    pipeline_cpu_seconds_per_sample: float
    """Of which ``Pipeline.ingest`` and ``tick``, per container sample."""
    window_cpu_seconds_per_sample: float
    """Of which the query window (``RecentStore.add`` and ``add_labels``), per container sample."""
    bytes_per_container: float
    """Pipeline + query window + labels, traced after the rounds, per tracked container."""
    traced_bytes: int


def bench_pipeline() -> Pipeline:
    """The pipeline of a benchmark aggregator (cluster ``bench``, 10 s resolution)."""
    return Pipeline(
        cluster="bench",
        resolution_seconds=INTERVAL_SECONDS,
        rollup_grace_seconds=5,
        series_expiry_seconds=300,
    )


def bench_store() -> RecentStore:
    """The query window of a benchmark aggregator (15 minutes at 10 s)."""
    return RecentStore(
        resolution_seconds=INTERVAL_SECONDS,
        window_seconds=WINDOW_SECONDS,
        eviction_seconds=WINDOW_SECONDS,
    )


def round_time_ns(index: int) -> int:
    """Scrape time of round ``index`` in ns: rounds are one interval apart from a fixed start."""
    return _T0_NS + int(index * INTERVAL_SECONDS * _NS_PER_S)


class _Aggregator:
    """The parts the ingest route drives, wired as ``create_app`` wires them."""

    def __init__(self) -> None:
        self.pipeline = bench_pipeline()
        self.store = bench_store()
        self.sink = MemorySink()
        self.pipeline_cpu_seconds = 0.0
        self.window_cpu_seconds = 0.0

    def ingest_round(self, batches: list[Batch], now_ns: int) -> int:
        """Feed one round of batches, emptying ``batches``; the number of points produced."""
        produced = 0
        pipeline, store, sink = self.pipeline, self.store, self.sink
        # Each batch is let go once ingested, as the server lets a request's batch go once it answered:
        # a round of batches held to the end would be walked by every full garbage collection meanwhile.
        batches.reverse()
        # Per-stage CPU, so the pipeline's and the window's shares can be told apart (a few clock reads
        # per batch of 60 samples: well under 1% of the round).
        clock = time.process_time
        in_pipeline = in_window = 0.0
        while batches:
            batch = batches.pop()
            started = clock()
            points = pipeline.ingest(batch, now_ns=now_ns)
            ingested = clock()
            store.add(points, now_ns=now_ns)
            store.add_labels(batch)
            in_window += clock() - ingested
            in_pipeline += ingested - started
            sink.write(points, scraped_at_ns=batch.scraped_at_ns)
            produced += len(points)
        # The grace period has passed by the next round: this emits the round's rollups.
        started = clock()
        tick_points = pipeline.tick(now_ns + int(6 * _NS_PER_S))
        ticked = clock()
        store.add(tick_points, now_ns=now_ns)
        in_window += clock() - ticked
        in_pipeline += ticked - started
        sink.write(tick_points)
        sink.flush()
        sink.clear()
        self.pipeline_cpu_seconds += in_pipeline
        self.window_cpu_seconds += in_window
        return produced + len(tick_points)


def measure_ingest(nodes: int, *, rounds: int, memory_rounds: int = 3) -> IngestRun:
    """Throughput over ``rounds`` timed rounds (after an untimed warm-up), then memory in a traced run."""
    # The garbage collector's thresholds python -m aggregator runs with (aggregator/gc_tuning.py).
    defaults = tune_garbage_collector()
    try:
        return _measure_ingest(nodes, rounds=rounds, memory_rounds=memory_rounds)
    finally:
        gc.set_threshold(*defaults)


def _measure_ingest(nodes: int, *, rounds: int, memory_rounds: int) -> IngestRun:
    cluster = SyntheticCluster(nodes=nodes, interval_seconds=INTERVAL_SECONDS)
    aggregator = _Aggregator()
    # Untimed warm-up: round 0 has no rates; rounds 1-2 turn the window's columns from constants into
    # rings, a one-off cost per series. From round 3 on every round costs the same.
    for index in range(WARM_UP_ROUNDS):
        aggregator.ingest_round(cluster.scrape(scraped_at_ns=round_time_ns(index)), round_time_ns(index))
    aggregator.pipeline_cpu_seconds = aggregator.window_cpu_seconds = 0.0
    wall = 0.0
    cpu = 0.0
    samples = 0
    for index in range(WARM_UP_ROUNDS, WARM_UP_ROUNDS + rounds):
        batches = cluster.scrape(scraped_at_ns=round_time_ns(index))
        samples += sum(len(batch.containers) for batch in batches)
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        aggregator.ingest_round(batches, round_time_ns(index) + _NS_PER_S)
        wall += time.perf_counter() - wall_started
        cpu += time.process_time() - cpu_started
    containers = cluster.container_count
    per_sample = 1 / samples if samples else 0.0
    pipeline_cpu, window_cpu = aggregator.pipeline_cpu_seconds, aggregator.window_cpu_seconds
    del aggregator
    traced = traced_state_bytes(cluster, memory_rounds, first_round=WARM_UP_ROUNDS + rounds)
    return IngestRun(
        nodes=nodes,
        containers=containers,
        samples_per_second=samples / wall if wall else 0.0,
        cpu_seconds_per_round=cpu / rounds,
        pipeline_cpu_seconds_per_sample=pipeline_cpu * per_sample,
        window_cpu_seconds_per_sample=window_cpu * per_sample,
        bytes_per_container=traced / containers,
        traced_bytes=traced,
    )


def traced_state_bytes(cluster: SyntheticCluster, rounds: int, *, first_round: int) -> int:
    """Bytes a fresh pipeline + store + labels hold after ``rounds`` rounds (batches and sink excluded)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        aggregator = _Aggregator()
        for index in range(first_round, first_round + rounds):
            batches = cluster.scrape(scraped_at_ns=round_time_ns(index))
            aggregator.ingest_round(batches, round_time_ns(index) + _NS_PER_S)
            del batches
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        del aggregator
        return held
    finally:
        tracemalloc.stop()


def max_rss_bytes() -> int:
    """The process's peak resident set so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def ingest_measures(run: IngestRun) -> list[Measure]:
    """The ``aggregator.ingest.memory.*`` lines of one size."""
    prefix = f"aggregator.ingest.memory.n{run.nodes}"
    cores = run.cpu_seconds_per_round / INTERVAL_SECONDS
    per_cpu_second = run.containers / run.cpu_seconds_per_round if run.cpu_seconds_per_round else 0.0
    return [
        Measure(f"{prefix}.container_samples_per_s", run.samples_per_second, "samples/s", 50_000, "min"),
        # The same target per CPU-second: steadier than wall time on a shared machine, and one core is
        # what the single-threaded ingest path can use.
        Measure(f"{prefix}.container_samples_per_cpu_s", per_cpu_second, "samples/cpu-s", 50_000, "min"),
        Measure(f"{prefix}.pipeline_cpu_us_per_sample", run.pipeline_cpu_seconds_per_sample * 1e6, "us"),
        Measure(f"{prefix}.window_cpu_us_per_sample", run.window_cpu_seconds_per_sample * 1e6, "us"),
        Measure(f"{prefix}.cpu_cores_at_10s", cores, "cores"),
        Measure(f"{prefix}.cpu_seconds_per_round", run.cpu_seconds_per_round, "cpu-s"),
        Measure(f"{prefix}.containers_tracked", run.containers, "containers"),
        Measure(f"{prefix}.bytes_per_container", run.bytes_per_container / 1024, "KiB", 10, "max"),
    ]

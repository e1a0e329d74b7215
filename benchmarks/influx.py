"""Ingest into the real InfluxDB: the real writer against a plain ``requests`` loop posting the same line
protocol (the baseline), and scrape-to-written latency of a paced run at the collectors' interval.

The baseline posts bodies built before the clock starts, byte for byte what the writer's backend sends
(gzipped or not, as the backend decides for that URL), so the gap is the writer's own work: building line
protocol, compressing, batching, handing over between threads. Baseline and writer runs alternate (three
pairs for up to ~33,000 points, one pair for more) because InfluxDB's rate drifts with the shared
machine's load; the ratio is the median of the pairs' ratios. Besides wall-clock rates, the CPU time the
benchmark process spends per point (``time.process_time``, all threads) is printed: it is far less noisy
than the rates on a loaded machine. Databases are named ``kph9_<random>`` and dropped afterwards.
"""

from __future__ import annotations

import secrets
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass

import requests

from aggregator.pipeline import Pipeline
from aggregator.points import Point
from aggregator.sinks.buffered import BufferedWriter
from aggregator.sinks.influx_v1 import InfluxV1Backend
from aggregator.sinks.lineprotocol import to_lines
from benchmarks.report import Measure, percentile
from benchmarks.synthetic import SyntheticCluster

BATCH_POINTS = 5000
"""The writer's default batch size; the baseline posts the same chunks."""
_NS_PER_S = 1_000_000_000
_POINTS_PER_RUN_BUDGET = 100_000
"""Baseline/writer pairs: as many as fit this many points, at least one and at most three."""


@dataclass(frozen=True, slots=True)
class Run:
    """One timed run: points per wall-clock second and this process's CPU time per point (µs)."""

    points_per_s: float
    cpu_us_per_point: float


def _database() -> str:
    return f"kph9_{secrets.token_hex(4)}"


def _drop(session: requests.Session, url: str, database: str) -> None:
    session.post(f"{url}/query", params={"q": f'DROP DATABASE "{database}"'}, timeout=30)


def _create(session: requests.Session, url: str, database: str) -> None:
    response = session.post(f"{url}/query", params={"q": f'CREATE DATABASE "{database}"'}, timeout=30)
    response.raise_for_status()


def pipeline_points(nodes: int, rounds: int, interval_seconds: float = 10.0) -> list[Point]:
    """Every point ``rounds`` scrapes of a ``nodes``-node cluster produce (rates from the second on)."""
    cluster = SyntheticCluster(nodes=nodes, interval_seconds=interval_seconds, seed=11)
    pipeline = Pipeline(
        cluster="bench",
        resolution_seconds=interval_seconds,
        rollup_grace_seconds=5,
        series_expiry_seconds=300,
    )
    start = (time.time_ns() // _NS_PER_S - 3600) * _NS_PER_S
    points: list[Point] = []
    for index in range(rounds):
        scraped = start + int(index * interval_seconds * _NS_PER_S)
        for batch in cluster.scrape(scraped_at_ns=scraped):
            points += pipeline.ingest(batch, now_ns=scraped)
        points += pipeline.tick(scraped + int(interval_seconds * _NS_PER_S))
    return points


def _chunks(points: list[Point], size: int) -> Iterator[list[Point]]:
    for start in range(0, len(points), size):
        yield points[start : start + size]


def baseline_run(url: str, points: list[Point]) -> Run:
    """InfluxDB's own acceptance rate: the writer's request bodies, built beforehand, posted one by one."""
    session = requests.Session()
    database = _database()
    encoder = InfluxV1Backend(session, url=url, database=database)
    bodies = [encoder.encode_body(to_lines(chunk)) for chunk in _chunks(points, BATCH_POINTS)]
    headers = {"Content-Encoding": "gzip"} if encoder.compress else {}
    try:
        _create(session, url, database)
        cpu_started = time.process_time()
        started = time.perf_counter()
        for body in bodies:
            response = session.post(
                f"{url}/write",
                params={"db": database, "precision": "ns"},
                data=body,
                headers=headers,
                timeout=60,
            )
            response.raise_for_status()
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    finally:
        _drop(session, url, database)
        session.close()
    return Run(len(points) / elapsed, cpu / len(points) * 1e6)


def writer_run(url: str, points: list[Point]) -> tuple[Run, int]:
    """The real ``BufferedWriter`` + ``InfluxV1Backend``, from the first write to a drained flush."""
    session = requests.Session()
    database = _database()
    writer = BufferedWriter(
        InfluxV1Backend(requests.Session(), url=url, database=database),
        batch_points=BATCH_POINTS,
        flush_interval_seconds=1.0,
    )
    try:
        _create(session, url, database)
        cpu_started = time.process_time()
        started = time.perf_counter()
        for chunk in _chunks(points, 200):  # about one node's batch per write, as the ingest route does
            writer.write(chunk)
        if not writer.flush(120):
            raise RuntimeError("the writer did not drain within 120 s")
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        stats = writer.stats()
    finally:
        writer.close(5)
        _drop(session, url, database)
        session.close()
    return Run(len(points) / elapsed, cpu / len(points) * 1e6), stats.points_written


def paced_latencies(url: str, nodes: int, rounds: int, interval_seconds: float) -> list[float]:
    """Scrape-to-written latency (s) of each node batch of a run paced at ``interval_seconds``."""
    cluster = SyntheticCluster(nodes=nodes, interval_seconds=interval_seconds, seed=12)
    pipeline = Pipeline(
        cluster="bench",
        resolution_seconds=interval_seconds,
        rollup_grace_seconds=1,
        series_expiry_seconds=300,
    )
    latencies: list[float] = []
    session = requests.Session()
    database = _database()
    writer = BufferedWriter(
        InfluxV1Backend(requests.Session(), url=url, database=database),
        batch_points=BATCH_POINTS,
        flush_interval_seconds=1.0,
        latency_observer=latencies.append,
    )
    try:
        _create(session, url, database)
        first = time.time_ns() + _NS_PER_S
        for index in range(rounds):
            tick = first + int(index * interval_seconds * _NS_PER_S)
            batches = cluster.scrape(scraped_at_ns=tick)  # built before the tick: the scrape itself
            delay = (tick - time.time_ns()) / _NS_PER_S
            if delay > 0:
                time.sleep(delay)  # a schedule (the collectors' tick), not synchronisation
            for batch in batches:
                points = pipeline.ingest(batch, now_ns=time.time_ns())
                writer.write(points, scraped_at_ns=batch.scraped_at_ns)
            writer.write(pipeline.tick(time.time_ns()))
        if not writer.flush(120):
            raise RuntimeError("the writer did not drain within 120 s")
    finally:
        writer.close(5)
        _drop(session, url, database)
        session.close()
    return latencies


def influx_measures(
    url: str, *, nodes: int, rounds: int, pace_rounds: int, pace_interval: float
) -> list[Measure]:
    """``aggregator.ingest.influx.*`` lines: writer vs baseline throughput and CPU, and paced latency."""
    points = pipeline_points(nodes, rounds)
    pairs = max(1, min(3, _POINTS_PER_RUN_BUDGET // len(points)))
    baselines: list[Run] = []
    writers: list[Run] = []
    stored: list[int] = []
    for _ in range(pairs):
        baselines.append(baseline_run(url, points))
        run, written = writer_run(url, points)
        writers.append(run)
        stored.append(written)
    ratio = statistics.median(
        w.points_per_s / b.points_per_s for w, b in zip(writers, baselines, strict=True)
    )
    latencies = paced_latencies(url, nodes, pace_rounds, pace_interval)
    prefix = f"aggregator.ingest.influx.n{nodes}"
    return [
        Measure(f"{prefix}.points", len(points), "points"),
        Measure(f"{prefix}.pairs", pairs, "runs"),
        Measure(
            f"{prefix}.baseline_points_per_s",
            statistics.median(b.points_per_s for b in baselines),
            "points/s",
        ),
        Measure(
            f"{prefix}.writer_points_per_s", statistics.median(w.points_per_s for w in writers), "points/s"
        ),
        Measure(f"{prefix}.writer_vs_baseline", ratio, "ratio", 0.8, "min"),
        Measure(
            f"{prefix}.baseline_cpu_per_point", statistics.median(b.cpu_us_per_point for b in baselines), "us"
        ),
        Measure(
            f"{prefix}.writer_cpu_per_point", statistics.median(w.cpu_us_per_point for w in writers), "us"
        ),
        Measure(f"{prefix}.points_written", min(stored), "points"),
        Measure(f"{prefix}.latency_interval", pace_interval, "s"),
        Measure(f"{prefix}.latency_p50", percentile(latencies, 0.5), "s", pace_interval + 2, "max"),
        Measure(f"{prefix}.latency_p99", percentile(latencies, 0.99), "s", pace_interval + 2, "max"),
    ]

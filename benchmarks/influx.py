"""Ingest into the real InfluxDB: the real writer against a plain ``requests`` loop posting the same line
protocol (the baseline), and scrape-to-written latency of a paced run at the collectors' interval.

Databases are named ``kph9_<random>`` and dropped afterwards.
"""

from __future__ import annotations

import gzip
import secrets
import time
from collections.abc import Iterator

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


def baseline_points_per_second(url: str, points: list[Point]) -> float:
    """InfluxDB's own acceptance rate: pre-serialised gzip bodies posted one after another."""
    session = requests.Session()
    database = _database()
    bodies = [
        gzip.compress("\n".join(to_lines(chunk)).encode(), 1) for chunk in _chunks(points, BATCH_POINTS)
    ]
    try:
        _create(session, url, database)
        started = time.perf_counter()
        for body in bodies:
            response = session.post(
                f"{url}/write",
                params={"db": database, "precision": "ns"},
                data=body,
                headers={"Content-Encoding": "gzip"},
                timeout=60,
            )
            response.raise_for_status()
        elapsed = time.perf_counter() - started
    finally:
        _drop(session, url, database)
        session.close()
    return len(points) / elapsed


def writer_points_per_second(url: str, points: list[Point]) -> tuple[float, int]:
    """The real ``BufferedWriter`` + ``InfluxV1Backend``: points/s from the first write to a drained flush."""
    session = requests.Session()
    database = _database()
    writer = BufferedWriter(
        InfluxV1Backend(requests.Session(), url=url, database=database),
        batch_points=BATCH_POINTS,
        flush_interval_seconds=1.0,
    )
    try:
        _create(session, url, database)
        started = time.perf_counter()
        for chunk in _chunks(points, 200):  # about one node's batch per write, as the ingest route does
            writer.write(chunk)
        if not writer.flush(120):
            raise RuntimeError("the writer did not drain within 120 s")
        elapsed = time.perf_counter() - started
        stats = writer.stats()
    finally:
        writer.close(5)
        _drop(session, url, database)
        session.close()
    return len(points) / elapsed, stats.points_written


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
    """``aggregator.ingest.influx.*`` lines: writer vs baseline throughput, and paced latency."""
    points = pipeline_points(nodes, rounds)
    baseline = baseline_points_per_second(url, points)
    written, stored = writer_points_per_second(url, points)
    latencies = paced_latencies(url, nodes, pace_rounds, pace_interval)
    prefix = f"aggregator.ingest.influx.n{nodes}"
    return [
        Measure(f"{prefix}.points", len(points), "points"),
        Measure(f"{prefix}.baseline_points_per_s", baseline, "points/s"),
        Measure(f"{prefix}.writer_points_per_s", written, "points/s"),
        Measure(f"{prefix}.writer_vs_baseline", written / baseline, "ratio", 0.8, "min"),
        Measure(f"{prefix}.points_written", stored, "points"),
        Measure(f"{prefix}.latency_interval", pace_interval, "s"),
        Measure(f"{prefix}.latency_p50", percentile(latencies, 0.5), "s", pace_interval + 2, "max"),
        Measure(f"{prefix}.latency_p99", percentile(latencies, 0.99), "s", pace_interval + 2, "max"),
    ]

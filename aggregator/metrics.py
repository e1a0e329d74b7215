"""The aggregator's own Prometheus metrics, in a registry of their own (one per app, so tests can build many).

Counters the request path owns (batches, samples, latencies) are prometheus-client instruments; what the
sink and the pipeline already count is read from them when ``/metrics`` is scraped, so there is one source
of truth per number. Nothing here carries a setting, so no secret can leak through ``/metrics``.

Usage::

    metrics = AggregatorMetrics()
    metrics.watch(pipeline=pipeline, sink=writer)
    metrics.batches_received.labels(outcome="accepted").inc()
    body = metrics.render()      # Prometheus text format
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aggregator.pipeline import PipelineStats
from aggregator.sinks import Sink
from aggregator.sinks.buffered import MonitoredSink

PREFIX = "kpulse_aggregator"

BATCH_OUTCOMES = (
    "accepted",
    "duplicate",
    "unauthorized",
    "forbidden",
    "too_large",
    "malformed",
    "invalid",
)
"""Labels of ``batches_received``: what became of an ingest request."""
METRICS_API_OUTCOMES = ("allowed", "unauthenticated", "forbidden", "authorization_failed")
"""Labels of ``metrics_api_requests``: what became of a request to the metrics API port (probes aside)."""
TRUST_RELOAD_OUTCOMES = ("unchanged", "changed", "failed")
"""Labels of ``metrics_api_trust_reloads``: what a periodic re-read of the front-proxy trust found."""

SCRAPE_TO_WRITE_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
"""Seconds; a healthy pipeline writes within about one interval plus the flush interval."""
INGEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class _PipelineLike(Protocol):
    @property
    def stats(self) -> PipelineStats: ...


class AggregatorMetrics:
    """Instruments of one aggregator app; ``registry`` is private to it."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.batches_received = Counter(
            f"{PREFIX}_batches_received",
            "Ingest requests by outcome (accepted, duplicate, or why they were refused).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in BATCH_OUTCOMES:
            self.batches_received.labels(outcome=outcome)
        self.samples_received = Counter(
            f"{PREFIX}_samples_received",
            "Samples in parsed batches, by kind (container, pod, node) and outcome (accepted, duplicate, "
            "rejected: invalid, left out of an otherwise accepted batch).",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.ingest_seconds = Histogram(
            f"{PREFIX}_ingest_request_seconds",
            "Time to handle one authorised ingest request (body, parsing, pipeline), in seconds.",
            buckets=INGEST_BUCKETS,
            registry=self.registry,
        )
        self.scrape_to_write_seconds = Histogram(
            f"{PREFIX}_scrape_to_write_seconds",
            "From a batch's scrape time to the moment its last point was stored in InfluxDB, in seconds.",
            buckets=SCRAPE_TO_WRITE_BUCKETS,
            registry=self.registry,
        )
        self.tick_errors = Counter(
            f"{PREFIX}_tick_errors",
            "Background rollup ticks that failed (logged with their traceback).",
            registry=self.registry,
        )
        self.metrics_api_requests = Counter(
            f"{PREFIX}_metrics_api_requests",
            "Requests to the metrics.k8s.io port (APIService) by outcome: allowed, or why they were refused "
            "(authorization_failed: the API server could not be asked).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in METRICS_API_OUTCOMES:
            self.metrics_api_requests.labels(outcome=outcome)
        self.metrics_api_trust_reloads = Counter(
            f"{PREFIX}_metrics_api_trust_reloads",
            "Periodic re-reads of the metrics API's front-proxy trust (requestheader CA, names, headers) by "
            "outcome: unchanged, changed, failed (the last good trust stays in force).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in TRUST_RELOAD_OUTCOMES:
            self.metrics_api_trust_reloads.labels(outcome=outcome)
        self._state = _StateCollector()
        self.registry.register(self._state)

    def watch(self, *, pipeline: _PipelineLike | None = None, sink: Sink | None = None) -> None:
        """Report ``pipeline``'s and ``sink``'s own counters on every scrape (read from the loop thread)."""
        if pipeline is not None:
            self._state.pipeline = pipeline
        if sink is not None:
            self._state.sink = sink
            if isinstance(sink, MonitoredSink) and sink.latency_observer is None:
                sink.latency_observer = self.scrape_to_write_seconds.observe

    def render(self) -> bytes:
        """Every metric in the Prometheus text exposition format."""
        return generate_latest(self.registry)


class _StateCollector(Collector):
    """Reads the pipeline's and sink's counters at scrape time."""

    def __init__(self) -> None:
        self.pipeline: _PipelineLike | None = None
        self.sink: Sink | None = None

    def describe(self) -> Iterator[Metric]:
        # Nothing to pre-declare: the families depend on what is watched, and names cannot clash.
        return iter(())

    def collect(self) -> Iterator[Metric]:
        if isinstance(self.sink, MonitoredSink):
            yield from _sink_families(self.sink)
        if self.pipeline is not None:
            yield from _pipeline_families(self.pipeline.stats)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", documentation, value=value)


def _sink_families(sink: MonitoredSink) -> Iterator[Metric]:
    stats = sink.stats()
    yield _counter("points_written", "Points InfluxDB stored.", stats.points_written)
    yield _counter(
        "points_rejected",
        "Points InfluxDB refused for good (type conflict, unparsable); never retried.",
        stats.points_rejected,
    )
    yield _counter(
        "points_dropped",
        "Points the writer dropped: oldest on buffer overflow, and unwritten ones at shutdown.",
        stats.points_dropped,
    )
    yield _counter(
        "write_errors", "Failed InfluxDB write requests, retried or permanent.", stats.write_errors
    )
    yield _gauge("write_buffer_points", "Points accepted but not yet written.", stats.buffer_depth)
    if stats.buffer_capacity is not None:
        yield _gauge(
            "write_buffer_capacity_points", "Points the write buffer holds at most.", stats.buffer_capacity
        )
    if stats.spool_bytes is not None:
        yield _gauge("spool_bytes", "Bytes the on-disk spool holds.", stats.spool_bytes)
    if stats.spool_capacity_bytes is not None:
        yield _gauge(
            "spool_capacity_bytes", "Bytes the on-disk spool holds at most.", stats.spool_capacity_bytes
        )
        yield _counter(
            "spool_points_dropped",
            "Points the spool dropped: oldest segments when full, corrupt records (in points_dropped too).",
            stats.spool_points_dropped,
        )
    if stats.last_success_ns is not None:
        yield _gauge(
            "last_write_success_timestamp_seconds",
            "Unix time of the last successful InfluxDB write, in seconds.",
            stats.last_success_ns / 1e9,
        )


def _pipeline_families(stats: PipelineStats) -> Iterator[Metric]:
    suppressed = CounterMetricFamily(
        f"{PREFIX}_rates_suppressed",
        "Samples that produced no rate, by reason (first, restart, reset, out_of_order, absurd).",
        labels=["reason"],
    )
    for reason, count in sorted(stats.rates_suppressed.items()):
        suppressed.add_metric([reason], count)
    yield suppressed
    series = GaugeMetricFamily(
        f"{PREFIX}_series_tracked", "Series whose rate baselines are held, by kind.", labels=["kind"]
    )
    series.add_metric(["container"], stats.container_series)
    series.add_metric(["pod"], stats.pod_series)
    series.add_metric(["node"], stats.node_series)
    yield series
    yield _counter("points_produced", "Points the pipeline produced for the sink.", stats.points)
    yield _counter(
        "series_expired", "Series released after not being seen for a while.", stats.series_expired
    )
    yield _counter(
        "rollups_too_late",
        "Node contributions that arrived after their bucket's rollup was written.",
        stats.rollups_too_late,
    )
    yield _gauge("rollup_buckets", "Time buckets the rollup window holds.", stats.rollup_buckets)

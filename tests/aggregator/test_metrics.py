"""The aggregator's own metrics: a private registry, counters read from the sink and the pipeline."""

from __future__ import annotations

from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from aggregator.metrics import AggregatorMetrics
from aggregator.pipeline import Pipeline
from aggregator.points import Point
from aggregator.sinks.memory import MemorySink


def _samples(metrics: AggregatorMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.render().decode())
        for sample in family.samples
    }


def test_each_instance_has_its_own_registry_not_the_global_one() -> None:
    first, second = AggregatorMetrics(), AggregatorMetrics()
    first.batches_received.labels(outcome="accepted").inc()

    assert _samples(first)[("kpulse_aggregator_batches_received_total", (("outcome", "accepted"),))] == 1
    assert _samples(second)[("kpulse_aggregator_batches_received_total", (("outcome", "accepted"),))] == 0
    assert (
        REGISTRY.get_sample_value("kpulse_aggregator_batches_received_total", {"outcome": "accepted"}) is None
    )


def test_sink_and_pipeline_counters_are_read_at_scrape_time() -> None:
    metrics = AggregatorMetrics()
    sink = MemorySink(clock_ns=lambda: 3_000_000_000)
    pipeline = Pipeline(cluster="c", resolution_seconds=10, rollup_grace_seconds=5, series_expiry_seconds=300)
    metrics.watch(pipeline=pipeline, sink=sink)

    sink.write([Point("m", {}, {"v": 1.0}, 1)] * 3, scraped_at_ns=1_000_000_000)
    before = _samples(metrics)
    sink.flush()
    after = _samples(metrics)

    assert before[("kpulse_aggregator_write_buffer_points", ())] == 3
    assert before[("kpulse_aggregator_points_written_total", ())] == 0
    assert after[("kpulse_aggregator_points_written_total", ())] == 3
    assert after[("kpulse_aggregator_write_buffer_points", ())] == 0
    assert after[("kpulse_aggregator_last_write_success_timestamp_seconds", ())] == 3.0
    # The watched sink feeds the latency histogram: 2 s from scrape to store.
    assert after[("kpulse_aggregator_scrape_to_write_seconds_count", ())] == 1
    assert after[("kpulse_aggregator_scrape_to_write_seconds_sum", ())] == 2.0
    for reason in ("first", "restart", "reset", "out_of_order", "absurd"):
        assert after[("kpulse_aggregator_rates_suppressed_total", (("reason", reason),))] == 0
    assert after[("kpulse_aggregator_series_tracked", (("kind", "container"),))] == 0

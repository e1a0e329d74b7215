"""Clock oddities over real HTTP into a real aggregator and InfluxDB: out-of-order and duplicate timestamps.

One container burns exactly 500 millicores by its counters. Batches arrive with a sample older than the
baseline inside a batch, a sample repeating the baseline's timestamp with another value, and a whole batch
from the past. Each odd sample gives no rate and does not move the baseline, so the next in-order sample
still gets 500 millicores; no rate in InfluxDB is negative or above it. (Had the pipeline adopted an odd
sample as its baseline, the next rate would read 678 or 300 millicores.)
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from collector.wire import Batch, ContainerSample
from tests.faults.conftest import AggregatorProcess
from tests.faults.engine import labelled_gauge
from tests.helpers import InfluxV1, wait_until

pytestmark = pytest.mark.integration

NS = 1_000_000_000
RESOLUTION = 10
RATE_MILLICORES = 500.0
STARTED_NS = 1_600_000_000 * NS


def _sample(timestamp_ns: int, cpu_seconds: float) -> ContainerSample:
    return ContainerSample(
        container_id="clock-c1",
        started_at_ns=STARTED_NS,
        timestamp_ns=timestamp_ns,
        namespace="default",
        pod="clock",
        container="clock",
        cpu_usage_nanoseconds_total=round(cpu_seconds * NS),
        memory_usage_bytes=1 << 20,
    )


def _batch(batch_id: str, scraped_at_ns: int, *samples: ContainerSample) -> Batch:
    return Batch(
        batch_id=batch_id,
        node="clock-node",
        source="docker",
        scraped_at_ns=scraped_at_ns,
        interval_seconds=RESOLUTION,
        containers=list(samples),
    )


def test_out_of_order_and_duplicate_timestamps_do_not_corrupt_rates(
    make_aggregator: Callable[..., AggregatorProcess], influx_url: str, database: str, tmp_path: Path
) -> None:
    aggregator = make_aggregator(
        influx_url, tmp_path / "spool", influx_database=database, resolution_seconds=str(RESOLUTION)
    )
    aggregator.start()
    t = 1_700_000_000 * NS  # a bucket boundary at 10 s
    s = RESOLUTION * NS
    # 0.5 CPU-seconds per second: the counter at T+n seconds is 0.5 * n.
    sent = [
        _batch("b1", t, _sample(t, 0)),
        _batch("b2", t + s, _sample(t + s, 5)),  # 500 m
        # In one batch: in order (500 m), then a sample older than that, with a glitched counter.
        _batch("b3", t + 2 * s, _sample(t + 2 * s, 10), _sample(t + s + 2 * NS, 1)),
        # The baseline's own timestamp again, with another value: no rate, baseline kept.
        _batch("b4", t + 3 * s, _sample(t + 2 * s, 14)),
        _batch("b5", t + 4 * s, _sample(t + 4 * s, 20)),  # 500 m against T+20 s (not 678, not 300)
        # A whole batch from the past, after a newer one: no rate, nothing moved.
        _batch("b6", t + 2 * s + 5 * NS, _sample(t + 2 * s + 5 * NS, 12.5)),
        _batch("b7", t + 5 * s, _sample(t + 5 * s, 25)),  # 500 m
    ]
    for batch in sent:
        response = requests.post(
            f"{aggregator.url}/api/v1/ingest",
            data=gzip.compress(batch.model_dump_json(exclude_none=True).encode()),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            timeout=10,
        )
        assert response.status_code == 202, response.text
    influx = InfluxV1(influx_url, database)

    def rates() -> dict[int, float | None]:
        rows = influx.rows('SELECT cpu_usage_millicores, memory_usage_bytes FROM "container"')
        found = {row["time"]: row["cpu_usage_millicores"] for row in rows}
        return found if t + 5 * s in found else {}

    found = wait_until(rates, 30, "the last point never reached InfluxDB", every_seconds=0.2)
    assert found == {
        t: None,
        t + s: RATE_MILLICORES,
        t + 2 * s: RATE_MILLICORES,  # b6's late point in this bucket brought no rate and removed none
        t + 3 * s: None,
        t + 4 * s: RATE_MILLICORES,
        t + 5 * s: RATE_MILLICORES,
    }
    text = requests.get(f"{aggregator.url}/metrics", timeout=5).text
    suppressed = "kpulse_aggregator_rates_suppressed_total"
    assert labelled_gauge(text, suppressed, 'reason="out_of_order"') == 3.0
    assert labelled_gauge(text, suppressed, 'reason="reset"') == 0.0
    for level in ("pod", "node"):
        negative = influx.rows(f'SELECT * FROM "{level}" WHERE cpu_usage_millicores < 0')
        assert negative == []

"""``dockerd`` restarted under a running collector: it reconnects and resumes within two intervals.

A private engine (``tests/faults/engine.py``) runs one busy container and keeps it across its own restart
(``--live-restore``); a real collector scrapes it every ``INTERVAL_SECONDS`` into a real aggregator and
InfluxDB. Also: a collector started while its engine is down waits for it instead of exiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.faults.conftest import AggregatorProcess
from tests.faults.engine import (
    CollectorProcess,
    PrivateDockerd,
    collector_env,
    labelled_gauge,
    private_engine,
)
from tests.helpers import InfluxV1, quote_string, wait_until

pytestmark = pytest.mark.integration

INTERVAL_SECONDS = 2.0
NS = 1_000_000_000
DEADLINE_SECONDS = 45.0
ACCEPTED = "kpulse_aggregator_batches_received_total"
BURN = ["sh", "-c", "while :; do :; done"]


@pytest.fixture
def engine() -> Iterator[PrivateDockerd]:
    with private_engine(live_restore=True) as dockerd:
        yield dockerd


def _rate_times(influx: InfluxV1, node: str) -> list[int]:
    rows = influx.rows(
        f'SELECT cpu_usage_millicores FROM "container" WHERE "node" = {quote_string(node)} '
        f"AND cpu_usage_millicores > 0"
    )
    return [row["time"] for row in rows]


def test_the_collector_resumes_within_two_intervals_after_dockerd_restarts(
    engine: PrivateDockerd,
    make_aggregator: Callable[..., AggregatorProcess],
    influx_url: str,
    database: str,
    tmp_path: Path,
) -> None:
    engine.start()
    image = engine.import_busybox()
    client = engine.client()
    try:
        client.containers.run(image, BURN, name="kph11-burner", detach=True, network_mode="none")
    finally:
        client.close()
    aggregator = make_aggregator(
        influx_url,
        tmp_path / "spool",
        influx_database=database,
        resolution_seconds=str(INTERVAL_SECONDS),
        flush_interval_seconds="0.2",
    )
    aggregator.start()
    collector = CollectorProcess(
        collector_env(
            docker_url=engine.url,
            aggregator_url=aggregator.url,
            node="restart-node",
            interval_seconds=INTERVAL_SECONDS,
        ),
        tmp_path / "collector.log",
    )
    collector.start()
    influx = InfluxV1(influx_url, database)
    try:

        def rates_flowing() -> bool:
            collector.assert_running()
            return len(_rate_times(influx, "restart-node")) >= 2

        wait_until(
            rates_flowing, DEADLINE_SECONDS, lambda: f"no rates before restart:\n{collector.log_text()}"
        )

        engine.stop()
        wait_until(
            lambda: "scrape failed" in collector.log_text(),
            DEADLINE_SECONDS,
            lambda: f"the collector never noticed the engine was gone:\n{collector.log_text()}",
        )
        engine.start()
        back_ns = time.time_ns()

        def resumed() -> list[int]:
            collector.assert_running()
            return [t for t in _rate_times(influx, "restart-node") if t >= back_ns - INTERVAL_SECONDS * NS]

        after = wait_until(
            resumed, DEADLINE_SECONDS, lambda: f"no rates after restart:\n{collector.log_text()}"
        )
        # Points carry their scrape's bucket: the first rate after the engine is back must be at most two
        # intervals later (a scrape right after the restart may still hit a stale pooled connection).
        assert min(after) <= back_ns + 2 * INTERVAL_SECONDS * NS, (min(after) - back_ns) / NS
        assert "source readable again" in collector.log_text()
        collector.assert_running()
    finally:
        collector.stop()


def test_a_collector_started_before_its_engine_waits_for_it(
    engine: PrivateDockerd,
    make_aggregator: Callable[..., AggregatorProcess],
    influx_url: str,
    database: str,
    tmp_path: Path,
) -> None:
    aggregator = make_aggregator(influx_url, tmp_path / "spool", influx_database=database)
    aggregator.start()
    collector = CollectorProcess(
        collector_env(
            docker_url=engine.url, aggregator_url=aggregator.url, node="early-node", interval_seconds=1
        ),
        tmp_path / "collector.log",
    )
    collector.start()
    try:
        wait_until(
            lambda: "cannot reach the source yet" in collector.log_text(),
            DEADLINE_SECONDS,
            lambda: f"no retry logged:\n{collector.log_text()}",
        )
        collector.assert_running()
        engine.start()

        def accepted() -> bool:
            collector.assert_running()
            text = requests.get(f"{aggregator.url}/metrics", timeout=5).text
            return (labelled_gauge(text, ACCEPTED, 'outcome="accepted"') or 0.0) > 0

        wait_until(accepted, DEADLINE_SECONDS, lambda: f"nothing delivered:\n{collector.log_text()}")
        assert "scraping docker every" in collector.log_text()
    finally:
        assert collector.stop() in (0, -15)

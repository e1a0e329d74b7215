"""Container churn: hundreds of short-lived containers come and go while a real collector scrapes each second.

A private engine (``tests/faults/engine.py``, empty but for these containers, so the baseline is exact)
runs ``CONTAINERS`` busybox containers, ``PARALLEL`` at a time, each burning one CPU for up to a second,
idling four and exiting; each is removed once it has exited. Afterwards: both services still run, no
container or pod rate in InfluxDB is negative or above one core (a busy loop cannot use more), and once the
gone containers' series expire the aggregator tracks no more container series than before the churn.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import docker.errors
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

CONTAINERS = 200
PARALLEL = 16
EXPIRY_SECONDS = 5
DEADLINE_SECONDS = 60.0
ONE_CORE_MILLICORES = 1000.0
JITTER = 1.2
"""Rates come from the containers' own read times; a little slack for when those are read late."""
NODE = "churn-node"
# Up to a second of one busy CPU, then four seconds idle: alive for about five scrapes, so rates exist
# even when the engine answers stats a second late.
BURN_THEN_IDLE = [
    "sh",
    "-c",
    "end=$(( $(date +%s) + 1 )); while [ $(date +%s) -lt $end ]; do :; done; sleep 4",
]
SERIES = "kpulse_aggregator_series_tracked"


@pytest.fixture
def engine() -> Iterator[PrivateDockerd]:
    with private_engine() as dockerd:
        dockerd.start()
        yield dockerd


def _container_series(aggregator: AggregatorProcess) -> float | None:
    text = requests.get(f"{aggregator.url}/metrics", timeout=5).text
    return labelled_gauge(text, SERIES, 'kind="container"')


def _run_one(client: docker.DockerClient, image: str, index: int) -> None:
    container = client.containers.run(
        image, BURN_THEN_IDLE, name=f"kph11-churn-{index}", detach=True, network_mode="none"
    )
    try:
        container.wait(timeout=30)
    finally:
        container.remove(force=True)


def test_hundreds_of_short_lived_containers_leave_no_bad_rate_and_no_state_behind(
    engine: PrivateDockerd,
    make_aggregator: Callable[..., AggregatorProcess],
    influx_url: str,
    database: str,
    tmp_path: Path,
) -> None:
    image = engine.import_busybox()
    aggregator = make_aggregator(
        influx_url,
        tmp_path / "spool",
        influx_database=database,
        resolution_seconds="1",
        series_expiry_seconds=str(EXPIRY_SECONDS),
        rollup_grace_seconds="1",
    )
    aggregator.start()
    collector = CollectorProcess(
        collector_env(docker_url=engine.url, aggregator_url=aggregator.url, node=NODE, interval_seconds=1),
        tmp_path / "collector.log",
    )
    collector.start()
    influx = InfluxV1(influx_url, database)
    try:
        wait_until(
            lambda: (
                influx.rows(
                    f'SELECT count(memory_usage_bytes) FROM "node" WHERE "node" = {quote_string(NODE)}'
                )
                or collector.assert_running()
            ),
            DEADLINE_SECONDS,
            lambda: f"the collector never delivered:\n{collector.log_text()[-3000:]}",
        )
        baseline = _container_series(aggregator)
        assert baseline == 0.0

        client = engine.client()
        try:
            with ThreadPoolExecutor(max_workers=PARALLEL, thread_name_prefix="kph11-churn") as pool:
                for future in [pool.submit(_run_one, client, image, i) for i in range(CONTAINERS)]:
                    future.result()
        finally:
            client.close()

        collector.assert_running()
        assert aggregator.process is not None
        assert aggregator.process.poll() is None

        def released() -> bool:
            collector.assert_running()
            return _container_series(aggregator) == baseline

        wait_until(
            released,
            EXPIRY_SECONDS + DEADLINE_SECONDS,
            lambda: f"container series still tracked: {_container_series(aggregator)}",
            every_seconds=0.5,
        )
        where = f'WHERE "node" = {quote_string(NODE)}'
        seen = influx.rows(f'SELECT count(memory_usage_bytes) FROM "container" {where} GROUP BY "container"')
        print(f"\nchurn: {len(seen)} of {CONTAINERS} short-lived containers were scraped at least once")
        assert len(seen) >= CONTAINERS // 4, f"only {len(seen)} of {CONTAINERS} containers were ever scraped"
        (rated,) = influx.rows(f'SELECT count(cpu_usage_millicores) FROM "container" {where}')
        assert rated["count"] >= CONTAINERS // 10, rated  # rates were computed in the churn, not only firsts
        for level in ("container", "pod"):
            (extremes,) = influx.rows(
                f'SELECT min(cpu_usage_millicores), max(cpu_usage_millicores) FROM "{level}" {where}'
            ) or [{"min": 0.0, "max": 0.0}]
            assert extremes["min"] >= 0, (level, extremes)
            assert extremes["max"] <= ONE_CORE_MILLICORES * JITTER, (level, extremes)
        cpus = os.cpu_count() or 1
        (node,) = influx.rows(
            f'SELECT min(cpu_usage_millicores), max(cpu_usage_millicores) FROM "node" {where}'
        )
        assert 0 <= node["min"] <= node["max"] <= cpus * ONE_CORE_MILLICORES * JITTER, node
        # Every container seen became a series, and every one of them was released again.
        assert aggregator.metrics()["kpulse_aggregator_series_expired_total"] >= len(seen)
    finally:
        collector.stop()

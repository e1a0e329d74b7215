"""Durability under faults: InfluxDB down under load, the aggregator SIGKILLed mid-stream, a full spool.

Real ``python -m aggregator`` processes with a disk spool write to a private ``influxd``; load comes as real
collector batches over HTTP, either from a generator that records which batches were acknowledged (2xx)
or from the collector's own ``Shipper``. What InfluxDB holds afterwards is compared point by point (series
and time) with what was acknowledged. Every wait polls with a deadline.
"""

from __future__ import annotations

import gzip
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from collector.shipper import INGEST_PATH, Shipper
from collector.wire import Batch
from tests.aggregator.api.batches import make_batch
from tests.faults.conftest import AggregatorProcess, OwnInfluxd
from tests.helpers import InfluxV1, free_tcp_port, tail, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

RESOLUTION_NS = 10 * 1_000_000_000
NODES = ("f1", "f2", "f3")
CONTAINERS = 20
MiB = 1024 * 1024
OUTAGE_SECONDS = 20.0

Key = tuple[str, str, int]
"""(node, container, bucket time in ns): one container point in InfluxDB."""


def _start_ns() -> int:
    # Three hours back, on a bucket boundary: every batch lands in a bucket of its own, all in the past.
    now = time.time_ns() - 3 * 3600 * 1_000_000_000
    return now - now % RESOLUTION_NS


def _keys(batch: Batch) -> set[Key]:
    bucket = batch.scraped_at_ns - batch.scraped_at_ns % RESOLUTION_NS
    return {(batch.node, sample.container, bucket) for sample in batch.containers}


def _stored(influx: InfluxV1) -> Counter[Key]:
    """Every container point in InfluxDB, counted (a duplicate would count twice)."""
    counts: Counter[Key] = Counter()
    for row in influx.rows('SELECT memory_working_set_bytes FROM container GROUP BY "node", "container"'):
        counts[(row["node"], row["container"], int(row["time"]))] += 1
    return counts


def _series_counts(influx: InfluxV1) -> dict[tuple[str, str], int]:
    counts: dict[tuple[str, str], int] = {}
    for row in influx.rows(
        'SELECT count(memory_working_set_bytes) FROM container GROUP BY "node", "container"'
    ):
        counts[(row["node"], row["container"])] = int(row["count"])
    return counts


def _database(server: OwnInfluxd) -> InfluxV1:
    InfluxV1(server.url).execute('CREATE DATABASE "kpulse_faults"')
    return InfluxV1(server.url, "kpulse_faults")


def _batches(start_ns: int, step: int, containers: int = CONTAINERS) -> list[Batch]:
    return [
        make_batch(node=node, scraped_at_ns=start_ns + step * RESOLUTION_NS, containers=containers)
        for node in NODES
    ]


@dataclass
class LoadGenerator:
    """Posts batches like a collector (each resent until acknowledged) and records when each was acked."""

    url: str
    containers: int = CONTAINERS
    pause_seconds: float = 0.05
    acked: list[tuple[float, Batch]] = field(default_factory=list)
    attempts_failed: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(30)

    def acked_since(self, moment: float) -> int:
        return sum(1 for at, _ in list(self.acked) if at >= moment)

    def _run(self) -> None:
        start = _start_ns()
        session = requests.Session()
        step = 0
        while not self._stop.is_set():
            for batch in _batches(start, step, self.containers):
                body = gzip.compress(batch.model_dump_json(exclude_none=True).encode())
                while not self._post(session, body):
                    if self._stop.wait(0.05):  # retry pause, like the collector's backoff
                        return
                self.acked.append((time.monotonic(), batch))
            step += 1
            self._stop.wait(self.pause_seconds)  # pacing of the load, not synchronisation

    def _post(self, session: requests.Session, body: bytes) -> bool:
        try:
            response = session.post(
                self.url + INGEST_PATH,
                data=body,
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
                timeout=10,
            )
        except requests.RequestException:
            self.attempts_failed += 1
            return False
        if response.ok:
            return True
        self.attempts_failed += 1
        return False


def _assert_all_stored(influx: InfluxV1, expected: set[Key], aggregator: AggregatorProcess) -> Counter[Key]:
    def complete() -> Counter[Key] | None:
        stored = _stored(influx)
        return stored if expected <= stored.keys() else None

    try:
        return wait_until(complete, 120, "not every acknowledged point reached InfluxDB", every_seconds=1.0)
    except AssertionError:
        missing = expected - _stored(influx).keys()
        raise AssertionError(
            f"{len(missing)} of {len(expected)} acknowledged points missing, e.g. {sorted(missing)[:5]}\n"
            f"{tail(aggregator.log, 60)}"
        ) from None


def test_points_accepted_while_influxdb_is_down_are_all_written_after_it_returns(
    own_influxd: OwnInfluxd, make_aggregator: Callable[..., AggregatorProcess], tmp_path: Path
) -> None:
    aggregator = make_aggregator(own_influxd.url, tmp_path / "spool")
    aggregator.start()
    influx = _database(own_influxd)
    load = LoadGenerator(aggregator.url)
    load.start()
    try:
        wait_until(
            lambda: influx.ping() and _stored(influx), 60, "no point reached InfluxDB before the outage"
        )

        own_influxd.kill()
        down_at = time.monotonic()
        wait_until(
            lambda: aggregator.metrics().get("kpulse_aggregator_write_errors_total", 0) > 0,
            30,
            "the aggregator never noticed the outage",
        )
        wait_until(lambda: load.acked_since(down_at) >= 60, 60, "too few batches acknowledged in the outage")
        rss_early = aggregator.rss_bytes()
        # An outage of at least OUTAGE_SECONDS: long enough for the writer's backoff to grow.
        wait_until(
            lambda: load.acked_since(down_at) >= 240 and time.monotonic() - down_at >= OUTAGE_SECONDS,
            120,
            "too few batches acknowledged in the outage",
            every_seconds=0.5,
        )
        rss_late = aggregator.rss_bytes()
        spool_during = aggregator.metrics()["kpulse_aggregator_spool_bytes"]

        own_influxd.start()
        up_at = time.monotonic()
        during = [batch for at, batch in list(load.acked) if down_at <= at < up_at]
        wait_until(lambda: load.acked_since(up_at) >= 15, 60, "no batch acknowledged after the outage")
    finally:
        load.stop()

    expected_outage = set().union(*(_keys(batch) for batch in during))
    expected_all = set().union(*(_keys(batch) for _, batch in load.acked))
    stored = _assert_all_stored(influx, expected_all, aggregator)
    assert expected_outage <= stored.keys()
    assert max(stored.values()) == 1
    metrics = aggregator.metrics()
    assert metrics["kpulse_aggregator_points_dropped_total"] == 0
    # The spool held the outage on disk; memory stayed flat while it grew.
    assert spool_during > 0
    assert rss_late <= rss_early * 1.2 + 16 * MiB, (rss_early, rss_late)
    print(
        f"\noutage: {len(during)} batches, {len(expected_outage)} container points acked while InfluxDB"
        f" was down ({up_at - down_at:.0f} s), all {len(expected_all)} acked points stored, 0 lost,"
        f" 0 duplicated;"
        f" spool {spool_during / MiB:.1f} MiB; RSS {rss_early / MiB:.1f} -> {rss_late / MiB:.1f} MiB"
    )


def test_aggregator_killed_mid_stream_loses_and_duplicates_nothing(
    own_influxd: OwnInfluxd, make_aggregator: Callable[..., AggregatorProcess], tmp_path: Path
) -> None:
    # A long flush interval keeps acknowledged points in the spool only, so the kill catches some.
    aggregator = make_aggregator(
        own_influxd.url, tmp_path / "spool", flush_interval_seconds="5", write_batch_points="1000000"
    )
    aggregator.start()
    influx = _database(own_influxd)
    shipper = Shipper(
        requests.Session(), url=aggregator.url, token=None, retry_initial_seconds=0.05, retry_max_seconds=0.5
    )
    shipper.start()
    start = _start_ns()
    submitted: list[Batch] = []

    def submit(steps: range) -> None:
        for step in steps:
            for batch in _batches(start, step):
                shipper.submit(batch)
                submitted.append(batch)

    submit(range(40))
    wait_until(lambda: shipper.stats.batches_sent >= 60, 60, "the aggregator took too few batches")
    submit(range(40, 60))  # more in the shipper's buffer and on the wire while the process dies
    aggregator.kill()
    spooled = sum(path.stat().st_size for path in (tmp_path / "spool").glob("*.seg"))
    sent_before_restart = shipper.stats.batches_sent
    aggregator.start()
    submit(range(60, 100))
    assert shipper.flush(120), f"{shipper.buffered} batches never delivered\n{tail(aggregator.log, 60)}"
    shipper.close()

    assert shipper.stats.batches_dropped_overflow == shipper.stats.batches_rejected == 0
    expected = set().union(*(_keys(batch) for batch in submitted))
    stored = _assert_all_stored(influx, expected, aggregator)
    assert stored.keys() == expected
    assert max(stored.values()) == 1
    # Each container series holds exactly one point per bucket its node sent.
    assert _series_counts(influx) == {(node, f"app{i}"): 100 for node in NODES for i in range(CONTAINERS)}
    assert spooled > 0, "the kill found nothing in the spool: the test did not exercise replay"
    assert "from an earlier run: replaying them" in tail(aggregator.log, 100000)
    print(
        f"\nSIGKILL: {len(submitted)} batches, {len(expected)} container points, "
        f"{sent_before_restart} batches acknowledged before the kill, {spooled} spool bytes replayed; "
        f"0 lost, 0 duplicated; collector send failures {shipper.stats.send_failures}"
    )


def test_a_long_outage_with_a_full_spool_keeps_memory_and_disk_flat(
    make_aggregator: Callable[..., AggregatorProcess], tmp_path: Path
) -> None:
    # Nothing listens on this port: InfluxDB stays away for the whole test.
    absent = f"http://127.0.0.1:{free_tcp_port()}"
    aggregator = make_aggregator(absent, tmp_path / "spool", spool_max_bytes=str(2 * MiB))
    aggregator.start()
    load = LoadGenerator(aggregator.url, containers=100, pause_seconds=0.0)
    load.start()
    try:
        wait_until(
            lambda: aggregator.metrics().get("kpulse_aggregator_spool_points_dropped_total", 0) > 0,
            120,
            "the spool never filled",
        )
        full_at = time.monotonic()
        rss_full = aggregator.rss_bytes()
        # About ten more spool-fulls of points (a 100-container batch is some 40 KiB on disk).
        wait_until(lambda: load.acked_since(full_at) >= 500, 180, "too few batches acknowledged")
        rss_later = aggregator.rss_bytes()
        metrics = aggregator.metrics()
    finally:
        load.stop()

    assert metrics["kpulse_aggregator_spool_bytes"] <= 2 * MiB
    assert metrics["kpulse_aggregator_spool_points_dropped_total"] > 0
    disk = sum(path.stat().st_size for path in (tmp_path / "spool").glob("*.seg"))
    assert disk <= 2 * MiB
    assert rss_later <= rss_full * 1.2 + 16 * MiB, (rss_full, rss_later)
    assert tail(aggregator.log, 100000).count("spool full") == 1
    print(
        f"\nfull spool: {len(load.acked)} batches acknowledged, "
        f"{metrics['kpulse_aggregator_spool_points_dropped_total']:.0f} oldest points dropped (logged"
        f" once), disk {disk / MiB:.2f} MiB; RSS {rss_full / MiB:.1f} -> {rss_later / MiB:.1f} MiB"
    )

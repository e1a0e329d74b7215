"""The query benchmark's server: pods fed in-process, with rates, and fed again once an interval passed."""

from __future__ import annotations

from aggregator.api.app import create_app
from aggregator.settings import AggregatorSettings
from aggregator.sinks.memory import MemorySink
from benchmarks.serve import Feeder
from benchmarks.synthetic import SyntheticCluster
from tests.helpers import wait_until

INTERVAL_SECONDS = 2.0


def test_the_feeder_loads_every_pod_with_rates_and_feeds_again_after_an_interval() -> None:
    settings = AggregatorSettings(
        cluster_name="bench", resolution_seconds=INTERVAL_SECONDS, influx_database="kph9_never_created"
    )
    sink = MemorySink()
    app = create_app(settings, sink=sink)
    cluster = SyntheticCluster(nodes=2, pods_per_node=3, interval_seconds=INTERVAL_SECONDS, seed=5)
    feeder = Feeder(app.state.aggregator, sink, cluster)
    service = app.state.query.service
    assert service.pod_usage() == []

    feeder.preload()
    first = feeder.scraped_at_ns
    pods = service.pod_usage()
    # Rates need two scrapes: every pod shows only if both preload rounds arrived.
    assert len(pods) == cluster.pod_count == 6
    assert all(len(pod.containers) == 2 and pod.containers[0][1][1][0] > 0 for pod in pods)
    assert not feeder.refresh(), "fed again before a scrape interval had passed"
    assert feeder.scraped_at_ns == first

    wait_until(feeder.refresh, 10 * INTERVAL_SECONDS, "the feeder never fed another round")
    assert feeder.scraped_at_ns is not None
    assert first is not None
    assert feeder.scraped_at_ns - first >= INTERVAL_SECONDS * 1e9
    assert len(service.pod_usage()) == 6

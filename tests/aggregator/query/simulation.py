"""A small simulated cluster that produces real wire batches with known, steady rates, for query tests.

Counters grow at exactly the configured rates between scrapes, so the real :class:`Pipeline` turns them into
known values: a container burning ``cpu_millicores`` yields that CPU rate from its second scrape on.

Usage::

    sim = Simulation(containers=[SimContainer("shop", "web-1", "app", cpu_millicores=250)])
    points = sim.run(pipeline, store, scrapes=30)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from aggregator.pipeline import Pipeline
from aggregator.points import Point
from aggregator.query.store import RecentStore
from collector.wire import Batch, ContainerSample, NetworkCounters, NodeSample, PodSample

NS_PER_S = 1_000_000_000
START_NS = 1_700_000_000 * NS_PER_S
"""A round time (a multiple of any sensible resolution) where simulations start."""


@dataclass(frozen=True, slots=True)
class SimContainer:
    namespace: str
    pod: str
    container: str
    node: str = "node-1"
    cpu_millicores: float = 100.0
    memory_bytes: int = 64 * 1024 * 1024
    rx_bytes_per_second: float = 1000.0
    memory_limit_bytes: int | None = None


@dataclass(slots=True)
class Simulation:
    containers: list[SimContainer]
    resolution_seconds: float = 10.0
    cluster: str = "test"
    node_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    pod_labels: Mapping[tuple[str, str], Mapping[str, str] | None] = field(default_factory=dict)
    """Per pod; ``None``: its samples carry no labels (a kubelet whose pod list failed)."""
    node_cpu_millicores: float = 1500.0
    node_memory_bytes: int = 2 * 1024**3
    start_ns: int = START_NS
    scrape: int = 0

    @property
    def nodes(self) -> list[str]:
        return sorted({container.node for container in self.containers} | set(self.node_labels))

    def scrape_time_ns(self, index: int) -> int:
        # Half a second into the bucket, as a real collector's scrape lands a little after its tick.
        return self.start_ns + round(index * self.resolution_seconds * NS_PER_S) + NS_PER_S // 2

    def batches(self, index: int) -> list[Batch]:
        """Every node's batch of scrape ``index``: counters are ``rate x elapsed`` since scrape 0."""
        at = self.scrape_time_ns(index)
        elapsed_s = index * self.resolution_seconds
        batches = []
        for node in self.nodes:
            mine = [container for container in self.containers if container.node == node]
            samples = [
                ContainerSample(
                    container_id=f"{node}-{c.namespace}-{c.pod}-{c.container}",
                    started_at_ns=self.start_ns - NS_PER_S,
                    timestamp_ns=at,
                    namespace=c.namespace,
                    pod=c.pod,
                    container=c.container,
                    cpu_usage_nanoseconds_total=round(c.cpu_millicores * 1e6 * elapsed_s),
                    memory_usage_bytes=c.memory_bytes + 4096,
                    memory_working_set_bytes=c.memory_bytes,
                    memory_limit_bytes=c.memory_limit_bytes,
                )
                for c in mine
            ]
            pods = {}
            for c in mine:
                pods.setdefault((c.namespace, c.pod), 0.0)
                pods[(c.namespace, c.pod)] += c.rx_bytes_per_second
            pod_samples = [
                PodSample(
                    namespace=namespace,
                    pod=pod,
                    pod_id=f"{node}-{namespace}-{pod}",
                    timestamp_ns=at,
                    labels=_labels(self.pod_labels.get((namespace, pod), {"app": pod})),
                    network=NetworkCounters(rx_bytes_total=round(rx * elapsed_s), tx_bytes_total=0),
                )
                for (namespace, pod), rx in sorted(pods.items())
            ]
            labels = self.node_labels.get(node)
            batches.append(
                Batch(
                    batch_id=f"{node}-{index}",
                    node=node,
                    source="docker",
                    scraped_at_ns=at,
                    interval_seconds=self.resolution_seconds,
                    node_sample=NodeSample(
                        timestamp_ns=at,
                        labels=dict(labels) if labels is not None else None,
                        cpu_usage_nanoseconds_total=round(self.node_cpu_millicores * 1e6 * elapsed_s),
                        cpu_capacity_millicores=4000,
                        memory_usage_bytes=self.node_memory_bytes + 1024,
                        memory_working_set_bytes=self.node_memory_bytes,
                        memory_capacity_bytes=8 * 1024**3,
                    ),
                    containers=samples,
                    pods=pod_samples,
                )
            )
        return batches

    def run(self, pipeline: Pipeline, store: RecentStore | None, scrapes: int) -> list[Point]:
        """Feed ``scrapes`` scrapes through ``pipeline`` (and ``store``); every point produced, in order."""
        produced: list[Point] = []
        for _ in range(scrapes):
            index = self.scrape
            self.scrape += 1
            now = self.scrape_time_ns(index) + NS_PER_S
            for batch in self.batches(index):
                points = pipeline.ingest(batch, now_ns=now)
                produced += points
                if store is not None:
                    store.add(points, now_ns=now)
                    store.add_labels(batch)
            # Past every grace period of this bucket: namespace and cluster rollups are out.
            later = self.scrape_time_ns(index) + round(self.resolution_seconds * NS_PER_S * 0.9)
            points = pipeline.tick(later)
            produced += points
            if store is not None:
                store.add(points, now_ns=later)
        return produced

    def now_ns(self) -> int:
        """Wall clock just after the last scrape run."""
        return self.scrape_time_ns(max(self.scrape - 1, 0)) + NS_PER_S


def _labels(labels: Mapping[str, str] | None) -> dict[str, str] | None:
    return None if labels is None else dict(labels)


def make_pipeline(sim: Simulation, *, grace_seconds: float = 1.0) -> Pipeline:
    return Pipeline(
        cluster=sim.cluster,
        resolution_seconds=sim.resolution_seconds,
        rollup_grace_seconds=grace_seconds,
        series_expiry_seconds=3600,
    )

"""What the query routes ask: entities, metric series over any range, and the latest usage, in kpulse units.

A range is served from the in-memory window where it can and from InfluxDB before that, joined at a seam
that both sides agree on, so the caller sees one series: buckets ``>= seam`` come from memory, older ones
from InfluxDB, none from both. The step is the resolution while the range has at most ``max_points``
buckets and the smallest multiple of it that keeps the answer within ``max_points`` otherwise; memory is
then averaged per step exactly as InfluxDB's ``mean()`` is.

Usage::

    service = QueryService(store, cluster="prod", history=History(backend, resolution_ns=...))
    service.series(Level.NODE, ("prod", "n1"), "cpu_usage_millicores", start_ns, end_ns)
    service.pods(namespace="shop", selector=parse_selector("app=web"))
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from aggregator.catalog import Level
from aggregator.query.errors import BadTimeError, NotFoundError
from aggregator.query.heapster import BY_FIELD, HEAPSTER_METRICS, HeapsterMetric, metrics_for
from aggregator.query.history import History
from aggregator.query.selector import EVERYTHING, Selector
from aggregator.query.store import LATEST_FIELDS, ContainerLatest, Entity, RecentStore
from aggregator.query.timefmt import heapster_time

MAX_POINTS = 1000
"""Most points one range answer holds; longer ranges get a coarser step."""
FRESH_RESOLUTIONS = 3
"""metrics.k8s.io shows an entity only if its latest complete sample is at most this many resolutions old:
one missed scrape is tolerated, a pod or node that stopped reporting disappears (as from metrics-server)."""

_NO_LABELS: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Usage:
    """One entity's latest usage: CPU in millicores, working-set memory in bytes, at ``time_ns``."""

    name: str
    time_ns: int
    cpu_millicores: float
    memory_bytes: float


@dataclass(frozen=True, slots=True)
class NodeUsage:
    """A node's latest usage and labels."""

    usage: Usage
    labels: Mapping[str, str]


class PodUsage(NamedTuple):
    """A pod's newest sample time (ns), its containers' usage at that time, and its labels.

    ``containers`` holds ``(name, (time_ns, (cpu_millicores, memory_bytes)))`` per container, sorted by name:
    the store's own tuples, as a 30,000-pod list would otherwise build 60,000 objects per request.
    """

    namespace: str
    name: str
    time_ns: int
    containers: tuple[ContainerLatest, ...]
    labels: Mapping[str, str]


class QueryService:
    """Reads for the query routes over one cluster's store and (optionally) InfluxDB history."""

    def __init__(
        self,
        store: RecentStore,
        *,
        cluster: str,
        history: History | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
        max_points: int = MAX_POINTS,
    ) -> None:
        if max_points < 1:
            raise ValueError("max_points must be >= 1")
        self.store = store
        self.cluster = cluster
        self.history = history
        self._clock_ns = clock_ns
        self._max_points = max_points

    @property
    def resolution_ns(self) -> int:
        """Bucket width in ns (the aggregator's resolution)."""
        return self.store.resolution_ns

    def now_ns(self) -> int:
        """Wall-clock time in ns, from the clock handed in."""
        return self._clock_ns()

    # -- entities (Heapster's names) -----------------------------------------------------------------

    def _names(self, level: Level, prefix: Entity) -> list[str]:
        """The last name of every entity of ``level`` whose other names are ``prefix``, sorted."""
        width = len(prefix)
        return sorted(
            {
                entity[width]
                for entity in self.store.entities(level)
                if len(entity) == width + 1 and entity[:width] == prefix
            }
        )

    def nodes(self) -> list[str]:
        """Node names, sorted."""
        return self._names(Level.NODE, (self.cluster,))

    def namespaces(self) -> list[str]:
        """Namespaces with a namespace rollup or a pod in the window, sorted."""
        names = set(self._names(Level.NAMESPACE, (self.cluster,)))
        names.update(entity[1] for entity in self.store.entities(Level.POD) if entity[0] == self.cluster)
        return sorted(names)

    def pods(self, namespace: str) -> list[str]:
        """Pod names of ``namespace``, sorted; ``NotFoundError`` for an unknown namespace."""
        self.entity(Level.NAMESPACE, namespace)
        return self._names(Level.POD, (self.cluster, namespace))

    def containers(self, namespace: str, pod: str) -> list[str]:
        """Container names of the pod, sorted; ``NotFoundError`` for an unknown pod."""
        self.entity(Level.POD, namespace, pod)
        return self._names(Level.CONTAINER, (self.cluster, namespace, pod))

    def entity(self, level: Level, *names: str) -> Entity:
        """The store key of the named entity (``names`` after the cluster); ``NotFoundError`` if unknown."""
        entity = (self.cluster, *names)
        if level is Level.NAMESPACE:
            # A namespace exists as soon as one of its pods does, before its first cross-node rollup.
            if self.store.has(level, entity) or names[0] in self.namespaces():
                return entity
        elif self.store.has(level, entity):
            return entity
        kind = "pod" if level is Level.POD else level.value
        raise NotFoundError(f"{kind} {'/'.join(names)!r} not found", kind=kind, name="/".join(names))

    def heapster_metrics(self, level: Level, entity: Entity) -> list[str]:
        """Heapster names of the metrics ``entity`` has a value for in the window, in table order."""
        present = set(self.store.fields_present(level, entity))
        return [entry.name for entry in BY_FIELD.values() if entry.field in present]

    # -- ranges ----------------------------------------------------------------------------------------

    def step_ns(self, start_ns: int, end_ns: int) -> int:
        """The step for a range: the resolution, or a multiple of it keeping at most ``max_points`` points."""
        resolution = self.resolution_ns
        buckets = end_ns // resolution - (-(-start_ns // resolution)) + 1
        return resolution * max(1, -(-buckets // self._max_points))

    def series(
        self, level: Level, entity: Entity, field: str, start_ns: int | None, end_ns: int | None
    ) -> list[tuple[int, float]]:
        """``(time ns, value)`` of ``field`` for buckets in ``[start_ns, end_ns]``, oldest first.

        ``end_ns`` defaults to now; ``start_ns`` to the start of the in-memory window (everything held).
        """
        span = self.store.span()
        end = self.now_ns() if end_ns is None else end_ns
        if start_ns is None:
            if span is None:
                return []
            start = span[0]
        else:
            start = start_ns
        if start > end:
            raise BadTimeError(f"start {heapster_time(start)} is after end {heapster_time(end)}")
        step = self.step_ns(start, end)
        if span is None:
            seam = None
        elif self.history is None:
            # Nothing older to join: memory serves what it has from the start of the range.
            seam = start
        else:
            # The first step boundary from which memory has every bucket.
            seam = -(-span[0] // step) * step
        older: list[tuple[int, float]] = []
        if self.history is not None and (seam is None or start < seam):
            stop = end + 1 if seam is None else min(end + 1, seam)
            older = self.history.read(level, entity, field, start_ns=start, stop_ns=stop, step_ns=step)
        if seam is None or end < seam:
            return older
        recent = self.store.points(level, entity, field, max(start, seam), end)
        if step != self.resolution_ns:
            recent = _mean_per_step(recent, step)
        return older + recent

    # -- latest usage (metrics.k8s.io) -------------------------------------------------------------------

    @property
    def fresh_ns(self) -> int:
        """How old (ns) an entity's latest sample may be for metrics.k8s.io to show it."""
        return FRESH_RESOLUTIONS * self.resolution_ns

    def _not_before_ns(self) -> int:
        return self.now_ns() - self.fresh_ns

    def node_usage(self, name: str | None = None, selector: Selector = EVERYTHING) -> list[NodeUsage]:
        """Latest usage of every fresh node matching ``selector`` (or of node ``name``), sorted by name."""
        entities = None if name is None else [(self.cluster, name)]
        latest = self.store.latest(
            Level.NODE, LATEST_FIELDS, not_before_ns=self._not_before_ns(), entities=entities
        )
        nodes: list[NodeUsage] = []
        for entity, (time_ns, (cpu, memory)) in sorted(latest.items()):
            if entity[0] != self.cluster:
                continue
            labels = self.store.node_labels(entity[1])
            if selector.matches(labels):
                nodes.append(NodeUsage(Usage(entity[1], time_ns, cpu, memory), labels))
        return nodes

    def pod_usage(
        self, namespace: str | None = None, name: str | None = None, selector: Selector = EVERYTHING
    ) -> list[PodUsage]:
        """Latest usage of every fresh pod (in ``namespace``, named ``name``) matching ``selector``, sorted
        by namespace and name. A pod is fresh when at least one of its containers is."""
        found = self.store.latest_by_pod(
            self.cluster, not_before_ns=self._not_before_ns(), namespace=namespace, pod=name
        )
        all_labels = self.store.all_pod_labels()
        get_labels = all_labels.get
        if selector.empty:
            return [
                PodUsage(
                    pod_namespace, pod, time_ns, containers, get_labels((pod_namespace, pod), _NO_LABELS)
                )
                for pod_namespace, pod, time_ns, containers in found
            ]
        pods: list[PodUsage] = []
        for pod_namespace, pod, time_ns, containers in found:
            labels = get_labels((pod_namespace, pod), _NO_LABELS)
            if selector.matches(labels):
                pods.append(PodUsage(pod_namespace, pod, time_ns, containers, labels))
        return pods


def _mean_per_step(points: list[tuple[int, float]], step_ns: int) -> list[tuple[int, float]]:
    """Points averaged per epoch-aligned ``step_ns`` bucket, as InfluxDB's ``mean() GROUP BY time()``."""
    sums: dict[int, tuple[float, int]] = {}
    for time_ns, value in points:
        start = time_ns - time_ns % step_ns
        total, count = sums.get(start, (0.0, 0))
        sums[start] = (total + value, count + 1)
    return [(start, total / count) for start, (total, count) in sorted(sums.items())]


def heapster_metric_for(name: str, level: Level) -> HeapsterMetric:
    """The Heapster metric ``name`` on ``level``; ``NotFoundError`` naming it when unknown or not there."""
    entry = HEAPSTER_METRICS.get(name)
    if entry is None:
        raise NotFoundError(
            f"unknown metric {name!r}; known metrics: {', '.join(HEAPSTER_METRICS)}", kind="metric", name=name
        )
    if level not in entry.levels:
        available = ", ".join(metric.name for metric in metrics_for(level))
        raise NotFoundError(
            f"metric {name!r} does not exist for a {level.value}; a {level.value} has: {available}",
            kind="metric",
            name=name,
        )
    return entry

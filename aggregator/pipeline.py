"""The aggregator's processing core: a node's batch in, InfluxDB points out (rates, then rollups); no I/O.

Every point of a batch is written at the start of the batch's time bucket
(``floor(scraped_at_ns / resolution) * resolution``), so a later batch of the same node in the same bucket
overwrites the earlier one in InfluxDB. Rates are computed from the samples' own read times. Container,
pod and node points come straight from the batch; namespace and cluster points span nodes and come from
a :class:`~aggregator.rollup.RollupWindow` once the bucket is complete or its grace period has passed.

Usage::

    pipeline = Pipeline(cluster="prod", resolution_seconds=10, rollup_grace_seconds=5,
                        series_expiry_seconds=300)
    points = pipeline.ingest(batch, now_ns=time.time_ns())   # container, pod, node (+ due rollups)
    points += pipeline.tick(time.time_ns())                   # rollups whose grace passed; expiry
    pipeline.stats.rates_suppressed["reset"]

Not thread-safe, by design: the API calls ``ingest``, ``tick`` and ``stats`` from its one event loop
thread, so there is no lock on the hot path. Anything else must hand batches to that thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from aggregator import catalog, fieldcode
from aggregator.catalog import Level, Tag
from aggregator.points import Point, new_point
from aggregator.rates import Counters, Delta, RateTracker, SuppressionCounts
from aggregator.rollup import LEVEL_SPECS, FieldSums, NodeContribution, RollupWindow
from aggregator.tags import ContainerTagValues, NodeTags, read_container_tag_values
from collector.wire import Batch, NodeSample, PodSample

ABSURD_CPU_FACTOR = 1.25
"""A CPU rate above the node's capacity times this cannot be real (counter glitch, clock jump): dropped."""

_RECENT_BATCHES = 16_384
"""How many batch ids are remembered to recognise a resent batch."""

_NS_PER_S = 1_000_000_000
_PER_SECOND = 1e9
"""Factor turning ``delta / elapsed_ns`` into a per-second rate."""
_MILLICORES = 1e3
"""Factor turning ``cpu_ns / elapsed_ns`` (cores busy) into millicores."""

_CLUSTER = Tag.CLUSTER.value
_NODE = Tag.NODE.value

_CONTAINER_SPEC = LEVEL_SPECS[Level.CONTAINER]
_POD_SPEC = LEVEL_SPECS[Level.POD]
_NAMESPACE_SPEC = LEVEL_SPECS[Level.NAMESPACE]
_NODE_SPEC = LEVEL_SPECS[Level.NODE]

_CPU_USAGE = catalog.CPU_USAGE_MILLICORES.name
_CPU_USER = catalog.CPU_USER_MILLICORES.name
_CPU_SYSTEM = catalog.CPU_SYSTEM_MILLICORES.name
_NETWORK_RX_BYTES = catalog.NETWORK_RX_BYTES_PER_SECOND.name
_NETWORK_TX_BYTES = catalog.NETWORK_TX_BYTES_PER_SECOND.name
_CPU_THROTTLED_RATIO = catalog.CPU_THROTTLED_RATIO.name
_CPU_USAGE_SECONDS_TOTAL = catalog.CPU_USAGE_SECONDS_TOTAL.name
_CONTAINER_COUNT = catalog.CONTAINER_COUNT.name
_POD_COUNT = catalog.POD_COUNT.name

# The ``_read_*`` getters take a model's ``__dict__`` (where pydantic keeps the validated field values),
# not the model: attribute access on a pydantic model goes through its ``__getattr__`` hook, several times
# slower than a dict lookup, and these run for every container and pod of every batch.

_read_container_series = itemgetter("container_id", "timestamp_ns", "started_at_ns", "network")

# Network counters in tracker order, and the rate each becomes.
_read_network = itemgetter(
    "rx_bytes_total",
    "tx_bytes_total",
    "rx_packets_total",
    "tx_packets_total",
    "rx_errors_total",
    "tx_errors_total",
    "rx_dropped_total",
    "tx_dropped_total",
)
_NETWORK_RATES = tuple(
    metric.name
    for metric in (
        catalog.NETWORK_RX_BYTES_PER_SECOND,
        catalog.NETWORK_TX_BYTES_PER_SECOND,
        catalog.NETWORK_RX_PACKETS_PER_SECOND,
        catalog.NETWORK_TX_PACKETS_PER_SECOND,
        catalog.NETWORK_RX_ERRORS_PER_SECOND,
        catalog.NETWORK_TX_ERRORS_PER_SECOND,
        catalog.NETWORK_RX_DROPPED_PER_SECOND,
        catalog.NETWORK_TX_DROPPED_PER_SECOND,
    )
)

# Container counters in tracker order: CPU first (indices below), then disk, then its own network, which
# is left out (not padded with None) when the container shares its pod's: most never have one.
_read_container_counters = itemgetter(
    "cpu_usage_nanoseconds_total",
    "cpu_user_nanoseconds_total",
    "cpu_system_nanoseconds_total",
    "cpu_periods_total",
    "cpu_throttled_periods_total",
    "disk_read_bytes_total",
    "disk_write_bytes_total",
)
_FIRST_PER_SECOND = 5
"""The CPU counters (usage, user, system, periods, throttled periods) come first."""
_CONTAINER_PER_SECOND_RATES = (
    catalog.DISK_READ_BYTES_PER_SECOND.name,
    catalog.DISK_WRITE_BYTES_PER_SECOND.name,
    *_NETWORK_RATES,
)
"""The rates of the counters from ``_FIRST_PER_SECOND`` on, in tracker order."""

# Gauges are copied as they are; the wire and catalog names happen to agree, but the catalog's are written.
_CONTAINER_GAUGES = (
    ("memory_usage_bytes", catalog.MEMORY_USAGE_BYTES),
    ("memory_working_set_bytes", catalog.MEMORY_WORKING_SET_BYTES),
    ("memory_rss_bytes", catalog.MEMORY_RSS_BYTES),
    ("memory_cache_bytes", catalog.MEMORY_CACHE_BYTES),
    ("memory_limit_bytes", catalog.MEMORY_LIMIT_BYTES),
    ("cpu_limit_millicores", catalog.CPU_LIMIT_MILLICORES),
    ("cpu_request_millicores", catalog.CPU_REQUEST_MILLICORES),
    ("memory_request_bytes", catalog.MEMORY_REQUEST_BYTES),
    ("process_count", catalog.PROCESS_COUNT),
    ("restart_count", catalog.RESTART_COUNT),
    ("fs_usage_bytes", catalog.FS_USAGE_BYTES),
    ("fs_capacity_bytes", catalog.FS_CAPACITY_BYTES),
)
_read_container_gauges = itemgetter(*(attr for attr, _ in _CONTAINER_GAUGES))
_CONTAINER_GAUGE_NAMES = tuple(metric.name for _, metric in _CONTAINER_GAUGES)

_NODE_GAUGES = (
    ("cpu_capacity_millicores", catalog.CPU_CAPACITY_MILLICORES),
    ("cpu_allocatable_millicores", catalog.CPU_ALLOCATABLE_MILLICORES),
    ("memory_usage_bytes", catalog.MEMORY_USAGE_BYTES),
    ("memory_working_set_bytes", catalog.MEMORY_WORKING_SET_BYTES),
    ("memory_capacity_bytes", catalog.MEMORY_CAPACITY_BYTES),
    ("memory_allocatable_bytes", catalog.MEMORY_ALLOCATABLE_BYTES),
    ("fs_usage_bytes", catalog.FS_USAGE_BYTES),
    ("fs_capacity_bytes", catalog.FS_CAPACITY_BYTES),
)
_read_node_gauges = itemgetter(*(attr for attr, _ in _NODE_GAUGES))
_NODE_GAUGE_NAMES = tuple(metric.name for _, metric in _NODE_GAUGES)

_NETWORK_NAMES = frozenset(_NETWORK_RATES)
_POD_SUMMED = tuple(
    name for name in _POD_SPEC.names if name in _CONTAINER_SPEC.allowed and name not in _NETWORK_NAMES
)
"""Container fields a pod sums; its network is its own (the pod sandbox's), never its containers' sum."""
_POD_RESOURCE_FIELDS = (
    ("cpu_request_millicores", catalog.CPU_REQUEST_MILLICORES),
    ("cpu_limit_millicores", catalog.CPU_LIMIT_MILLICORES),
    ("memory_request_bytes", catalog.MEMORY_REQUEST_BYTES),
    ("memory_limit_bytes", catalog.MEMORY_LIMIT_BYTES),
)
_read_pod_resources = itemgetter(*(attr for attr, _ in _POD_RESOURCE_FIELDS))
_POD_RESOURCES = tuple(metric.name for _, metric in _POD_RESOURCE_FIELDS)
"""A PodSample's own request/limit totals (kubelet), which take precedence over its containers' sum."""
_NODE_SUMMED = tuple(
    metric.name
    for metric in (
        catalog.CPU_LIMIT_MILLICORES,
        catalog.CPU_REQUEST_MILLICORES,
        catalog.MEMORY_LIMIT_BYTES,
        catalog.MEMORY_REQUEST_BYTES,
        catalog.RESTART_COUNT,
    )
)
"""Container fields a node sums; its usage is its own (the whole machine's), never its containers' sum."""

# Container and pod points are built without checking each one against the catalog (the hot path): the
# names they can carry are checked once, here.
_CONTAINER_SPEC.require(
    (
        *_CONTAINER_GAUGE_NAMES,
        _CPU_USAGE_SECONDS_TOTAL,
        _CPU_USAGE,
        _CPU_USER,
        _CPU_SYSTEM,
        _CPU_THROTTLED_RATIO,
        *_CONTAINER_PER_SECOND_RATES,
    )
)
_POD_SPEC.require((*_POD_SUMMED, *_NETWORK_RATES, *_POD_RESOURCES, _CONTAINER_COUNT))
_POD_SUMS = FieldSums(_POD_SUMMED)
_NAMESPACE_SUMS = FieldSums(tuple(name for name in _NAMESPACE_SPEC.names if name != _POD_COUNT))
_NODE_SUMS = FieldSums(_NODE_SUMMED)
_CONTAINER_MEASUREMENT = _CONTAINER_SPEC.measurement
_POD_MEASUREMENT = _POD_SPEC.measurement

# Straight-line setters compiled from the names above (see aggregator/fieldcode.py for why).
_container_gauges = fieldcode.float_dict(_CONTAINER_GAUGE_NAMES)
_put_node_gauges = fieldcode.float_setter(_NODE_GAUGE_NAMES)
_put_pod_resources = fieldcode.float_setter(_POD_RESOURCES)
_put_network_rates = fieldcode.rate_setter(_NETWORK_RATES, _PER_SECOND)
_FIRST_NETWORK = _FIRST_PER_SECOND + 2
"""Container increases: CPU (5), disk read and write, then the container's own network if it has one."""
_DISK_READ, _DISK_WRITE = _CONTAINER_PER_SECOND_RATES[:2]
_put_disk_and_network_rates = fieldcode.rate_setter(_CONTAINER_PER_SECOND_RATES, _PER_SECOND)


_PodNetwork = tuple[PodSample, Delta | None]
"""A pod's sample and the increases of its network counters since the last (``None``: no rate)."""


def _has_rate(delta: Delta | None) -> bool:
    """Whether ``delta`` gives at least one rate."""
    return delta is not None and any(increase is not None for increase in delta.counters)


@dataclass(frozen=True, slots=True)
class PipelineStats:
    """A snapshot of the pipeline's counters, for the aggregator's ``/metrics``."""

    batches: int
    """Batches ingested (resent ones excluded)."""
    duplicate_batches: int
    """Batches ignored because their ``batch_id`` had been ingested already."""
    container_samples: int
    points: int
    """Points returned by ``ingest`` and ``tick``."""
    container_series: int
    pod_series: int
    node_series: int
    series_expired: int
    """Series released by expiry since start."""
    rollup_buckets: int
    """Time buckets the rollup window holds."""
    rollups_too_late: int
    """Node contributions that arrived after their bucket was released (no namespace/cluster effect)."""
    rollups_reemitted: int
    rates_suppressed: Mapping[str, int]
    """Samples without a rate, by reason (``first``, ``restart``, ``reset``, ``out_of_order``, ``absurd``)."""

    @property
    def series_tracked(self) -> int:
        """Container, pod-network and node series whose baselines are held."""
        return self.container_series + self.pod_series + self.node_series


class Pipeline:
    """Batches in, points out: rates per series, pod and node sums per batch, cross-node rollups."""

    def __init__(
        self,
        *,
        cluster: str,
        resolution_seconds: float,
        rollup_grace_seconds: float,
        series_expiry_seconds: float,
    ) -> None:
        if resolution_seconds <= 0 or rollup_grace_seconds < 0 or series_expiry_seconds <= 0:
            raise ValueError(
                "resolution_seconds and series_expiry_seconds must be > 0, rollup_grace_seconds >= 0"
            )
        self._cluster = cluster
        self._resolution_ns = max(1, round(resolution_seconds * _NS_PER_S))
        self._expiry_ns = max(1, round(series_expiry_seconds * _NS_PER_S))
        self._counts = SuppressionCounts()
        self._containers: RateTracker[tuple[str, str]] = RateTracker(self._counts)
        self._pods: RateTracker[tuple[str, str]] = RateTracker(self._counts)
        self._nodes: RateTracker[str] = RateTracker(self._counts)
        self._rollups = RollupWindow(
            cluster=cluster,
            resolution_ns=self._resolution_ns,
            grace_ns=round(rollup_grace_seconds * _NS_PER_S),
        )
        # Insertion-ordered, so the oldest id is the first key when the set is full.
        self._recent_batches: dict[tuple[str, str], None] = {}
        self._tags: dict[str, NodeTags] = {}
        self._last_sweep_ns: int | None = None
        self._batches = 0
        self._duplicates = 0
        self._container_samples = 0
        self._points = 0
        self._expired = 0

    @property
    def stats(self) -> PipelineStats:
        """The counters now (counts since start; series and buckets currently held)."""
        return PipelineStats(
            batches=self._batches,
            duplicate_batches=self._duplicates,
            container_samples=self._container_samples,
            points=self._points,
            container_series=len(self._containers),
            pod_series=len(self._pods),
            node_series=len(self._nodes),
            series_expired=self._expired,
            rollup_buckets=len(self._rollups),
            rollups_too_late=self._rollups.too_late,
            rollups_reemitted=self._rollups.reemitted,
            rates_suppressed=self._counts.as_dict(),
        )

    def ingest(self, batch: Batch, *, now_ns: int) -> list[Point]:
        """Container, pod and node points of ``batch`` + rollups it completed; ``now_ns``: wall clock, ns."""
        if self._seen_before(batch):
            # Its points went out the first time; processing it again would only turn every sample into
            # an out-of-order one and overwrite the node's rollup contribution with a rate-less copy.
            self._duplicates += 1
            return []
        self._batches += 1
        self._container_samples += len(batch.containers)
        node = batch.node
        cluster = self._cluster
        bucket_ns = batch.scraped_at_ns - batch.scraped_at_ns % self._resolution_ns
        node_sample = batch.node_sample
        capacity = node_sample.cpu_capacity_millicores if node_sample is not None else None
        cpu_ceiling = capacity * ABSURD_CPU_FACTOR if capacity else None

        points: list[Point] = []
        # (namespace, pod) -> the first container's tag values and every container's fields.
        pods: dict[tuple[str, str], tuple[ContainerTagValues, list[dict[str, float]]]] = {}
        known = self._tags.get(node)
        if known is None:
            known = self._tags[node] = NodeTags(cluster=cluster, node=node)
        known.seen_ns = now_ns
        container_tags = known.containers
        for sample in batch.containers:
            values = sample.__dict__
            tag_values = read_container_tag_values(values)
            namespace, pod = tag_values[0], tag_values[1]
            fields = self._container_fields(node, values, now_ns, cpu_ceiling)
            tags = container_tags.get(tag_values)
            if tags is None:
                tags = known.add_container(tag_values)
            points.append(new_point((_CONTAINER_MEASUREMENT, tags, fields, bucket_ns)))
            group = pods.get((namespace, pod))
            if group is None:
                pods[namespace, pod] = (tag_values, [fields])
            else:
                group[1].append(fields)

        pod_networks = self._pod_networks(batch, now_ns)
        node_fields = self._node_fields(node, node_sample, now_ns, capacity)
        in_namespaces: dict[str, list[dict[str, float]]] = {}
        all_pods: list[dict[str, float]] = []
        pod_tags = known.pods
        for (namespace, pod), (first, containers) in pods.items():
            fields = _POD_SUMS.total(containers)
            workload, workload_kind = first[3], first[4]
            network = pod_networks.get((namespace, pod))
            if network is not None:
                pod_sample, delta = network
                if delta is not None:
                    _put_network_rates(fields, delta.counters, delta.elapsed_ns)
                workload = pod_sample.workload or workload
                workload_kind = pod_sample.workload_kind or workload_kind
                # Kubernetes' own pod totals (init containers, sidecars, overhead) replace the plain sum.
                _put_pod_resources(fields, _read_pod_resources(pod_sample.__dict__))
            pod_values = (namespace, pod, workload, workload_kind)
            tags = pod_tags.get(pod_values)
            if tags is None:
                tags = known.add_pod(pod_values)
            fields[_CONTAINER_COUNT] = float(len(containers))
            points.append(new_point((_POD_MEASUREMENT, tags, fields, bucket_ns)))
            all_pods.append(fields)
            in_namespace = in_namespaces.get(namespace)
            if in_namespace is None:
                in_namespaces[namespace] = [fields]
            else:
                in_namespace.append(fields)

        node_fields.update(_NODE_SUMS.total(all_pods))
        node_fields[_CONTAINER_COUNT] = float(len(batch.containers))
        node_fields[_POD_COUNT] = float(len(pods))
        points.append(_NODE_SPEC.point({_CLUSTER: cluster, _NODE: node}, node_fields, bucket_ns))
        namespaces: dict[str, dict[str, float]] = {}
        for namespace, pod_fields in in_namespaces.items():
            sums = namespaces[namespace] = _NAMESPACE_SUMS.total(pod_fields)
            sums[_POD_COUNT] = float(len(pod_fields))
        known.forget_gone(batch.containers, len(pods))
        # The window keeps its own copy: the node point's dict belongs to whoever writes the point.
        contribution = NodeContribution(namespaces, dict(node_fields))
        points += self._rollups.contribute(bucket_ns, node, contribution, now_ns=now_ns)
        self._points += len(points)
        return points

    def tick(self, now_ns: int) -> list[Point]:
        """Namespace and cluster points whose grace ended by ``now_ns`` (wall time, ns); expires series."""
        points = self._rollups.tick(now_ns)
        # A sweep walks every series, so it runs at most once per resolution rather than on every tick.
        if self._last_sweep_ns is None or now_ns - self._last_sweep_ns >= self._resolution_ns:
            self._last_sweep_ns = now_ns
            for tracker in (self._containers, self._pods, self._nodes):
                self._expired += tracker.sweep(now_ns, self._expiry_ns)
            horizon = now_ns - self._expiry_ns
            for node in [node for node, known in self._tags.items() if known.seen_ns <= horizon]:
                del self._tags[node]
        self._points += len(points)
        return points

    def _seen_before(self, batch: Batch) -> bool:
        key = (batch.node, batch.batch_id)
        recent = self._recent_batches
        if key in recent:
            return True
        recent[key] = None
        if len(recent) > _RECENT_BATCHES:
            del recent[next(iter(recent))]
        return False

    def _container_fields(
        self, node: str, values: dict[str, Any], now_ns: int, cpu_ceiling: float | None
    ) -> dict[str, float]:
        """The container point's fields, from a ``ContainerSample``'s ``__dict__``."""
        container_id, timestamp_ns, started_at_ns, network = _read_container_series(values)
        counters: Counters = _read_container_counters(values)
        if network is not None:
            counters += _read_network(network.__dict__)
        delta = self._containers.update(
            (node, container_id), timestamp_ns, started_at_ns, counters, seen_ns=now_ns
        )
        fields = _container_gauges(_read_container_gauges(values))
        cpu_total = counters[0]
        if cpu_total is not None:
            fields[_CPU_USAGE_SECONDS_TOTAL] = cpu_total / _NS_PER_S
        if delta is None:
            return fields
        # Written out rather than looped: this runs for every container of every batch.
        elapsed_ns, increases = delta
        # Most containers share their pod's network, so their counters end with the disk's.
        shares_network = len(increases) == _FIRST_NETWORK
        if shares_network:
            usage, user, system, periods, throttled, disk_read, disk_write = increases
        else:
            usage, user, system, periods, throttled = increases[:_FIRST_PER_SECOND]
        usage_rate = None if usage is None else usage * _MILLICORES / elapsed_ns
        user_rate = None if user is None else user * _MILLICORES / elapsed_ns
        system_rate = None if system is None else system * _MILLICORES / elapsed_ns
        if cpu_ceiling is not None and (
            (usage_rate or 0.0) > cpu_ceiling
            or (user_rate or 0.0) > cpu_ceiling
            or (system_rate or 0.0) > cpu_ceiling
        ):
            # More CPU than the node has cannot be true; one bad reading must not spike every rollup.
            self._counts.absurd += 1
        else:
            if usage_rate is not None:
                fields[_CPU_USAGE] = usage_rate
            if user_rate is not None:
                fields[_CPU_USER] = user_rate
            if system_rate is not None:
                fields[_CPU_SYSTEM] = system_rate
        # A ratio needs periods to have elapsed; more throttled periods than periods means the two
        # counters were read at different moments, and the ratio would claim more than 100%.
        if periods and throttled is not None and throttled <= periods:
            fields[_CPU_THROTTLED_RATIO] = throttled / periods
        if shares_network:
            if disk_read is not None:
                fields[_DISK_READ] = disk_read * _PER_SECOND / elapsed_ns
            if disk_write is not None:
                fields[_DISK_WRITE] = disk_write * _PER_SECOND / elapsed_ns
        else:
            _put_disk_and_network_rates(fields, increases[_FIRST_PER_SECOND:], elapsed_ns)
        return fields

    def _pod_networks(self, batch: Batch, now_ns: int) -> dict[tuple[str, str], _PodNetwork]:
        """Each pod's sample and its network counters' increases (``None``: no rate), by (namespace, pod)."""
        networks: dict[tuple[str, str], _PodNetwork] = {}
        update = self._pods.update
        node = batch.node
        for pod_sample in batch.pods:
            delta = None
            network = pod_sample.network
            if network is not None:
                # The pod id is part of the key: a new sandbox is a new series, so no marker is needed.
                delta = update(
                    (node, pod_sample.pod_id),
                    pod_sample.timestamp_ns,
                    None,
                    _read_network(network.__dict__),
                    seen_ns=now_ns,
                )
            key = (pod_sample.namespace, pod_sample.pod)
            # While a sandbox is being replaced both may be listed; the one with rates says more.
            if key not in networks or _has_rate(delta):
                networks[key] = (pod_sample, delta)
        return networks

    def _node_fields(
        self, node: str, sample: NodeSample | None, now_ns: int, capacity: int | None
    ) -> dict[str, float]:
        """The node's own usage rates and gauges (no container sums yet)."""
        fields: dict[str, float] = {}
        if sample is None:
            return fields
        network = sample.network
        counters = (
            sample.cpu_usage_nanoseconds_total,
            None if network is None else network.rx_bytes_total,
            None if network is None else network.tx_bytes_total,
        )
        delta = self._nodes.update(node, sample.timestamp_ns, sample.boot_time_ns, counters, seen_ns=now_ns)
        if delta is not None:
            elapsed_ns, (cpu, rx_bytes, tx_bytes) = delta
            if cpu is not None:
                rate = cpu * _MILLICORES / elapsed_ns
                if capacity and rate > capacity * ABSURD_CPU_FACTOR:
                    self._counts.absurd += 1
                else:
                    fields[_CPU_USAGE] = rate
            if rx_bytes is not None:
                fields[_NETWORK_RX_BYTES] = rx_bytes * _PER_SECOND / elapsed_ns
            if tx_bytes is not None:
                fields[_NETWORK_TX_BYTES] = tx_bytes * _PER_SECOND / elapsed_ns
        _put_node_gauges(fields, _read_node_gauges(sample.__dict__))
        return fields

"""The metric catalog: every InfluxDB measurement, tag and field kpulse writes, in one place.

The InfluxDB writer, the query API, the dashboards and ``docs/schema.md`` take their names from here, and
the tests check the catalog against what the pipeline really writes, both ways. All field values are
written as floats, so a field's type never conflicts between writes.

Usage::

    from aggregator.catalog import CPU_USAGE_MILLICORES, Level, fields_for
    CPU_USAGE_MILLICORES.name          # "cpu_usage_millicores"
    fields_for(Level.POD)              # every field the pod measurement may carry
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Level(enum.StrEnum):
    """A rollup level; its value is the InfluxDB measurement name."""

    CONTAINER = "container"
    POD = "pod"
    NAMESPACE = "namespace"
    NODE = "node"
    CLUSTER = "cluster"


class Kind(enum.StrEnum):
    GAUGE = "gauge"
    """An instantaneous reading (or a sum of readings)."""
    COUNTER = "counter"
    """Cumulative since the entity started; only goes up within one incarnation."""
    RATE = "rate"
    """Per-second change of a counter over one scrape interval; never negative."""


class Tag(enum.StrEnum):
    CLUSTER = "cluster"
    NODE = "node"
    NAMESPACE = "namespace"
    POD = "pod"
    CONTAINER = "container"
    WORKLOAD = "workload"
    WORKLOAD_KIND = "workload_kind"


ALL_LEVELS = frozenset(Level)

TAGS_BY_LEVEL: dict[Level, tuple[Tag, ...]] = {
    Level.CONTAINER: (Tag.CLUSTER, Tag.NODE, Tag.NAMESPACE, Tag.POD, Tag.CONTAINER),
    Level.POD: (Tag.CLUSTER, Tag.NODE, Tag.NAMESPACE, Tag.POD),
    Level.NAMESPACE: (Tag.CLUSTER, Tag.NAMESPACE),
    Level.NODE: (Tag.CLUSTER, Tag.NODE),
    Level.CLUSTER: (Tag.CLUSTER,),
}
"""Tags every point of a level carries."""

OPTIONAL_TAGS_BY_LEVEL: dict[Level, tuple[Tag, ...]] = {
    Level.CONTAINER: (Tag.WORKLOAD, Tag.WORKLOAD_KIND),
    Level.POD: (Tag.WORKLOAD, Tag.WORKLOAD_KIND),
}
"""Tags a point carries when the source knows them (Kubernetes workloads)."""


@dataclass(frozen=True, slots=True)
class Metric:
    """One InfluxDB field: its name carries its unit; ``levels`` are the measurements that may carry it."""

    name: str
    kind: Kind
    unit: str
    levels: frozenset[Level]
    description: str


def _m(name: str, kind: Kind, unit: str, levels: frozenset[Level] | set[Level], description: str) -> Metric:
    return Metric(name, kind, unit, frozenset(levels), description)


_C, _P, _NS, _N, _CL = Level.CONTAINER, Level.POD, Level.NAMESPACE, Level.NODE, Level.CLUSTER

CPU_USAGE_MILLICORES = _m(
    "cpu_usage_millicores",
    Kind.RATE,
    "millicores",
    ALL_LEVELS,
    "CPU time used per second of wall time (1000 = one core busy).",
)
CPU_USER_MILLICORES = _m(
    "cpu_user_millicores", Kind.RATE, "millicores", {_C}, "CPU time in user mode per second of wall time."
)
CPU_SYSTEM_MILLICORES = _m(
    "cpu_system_millicores", Kind.RATE, "millicores", {_C}, "CPU time in kernel mode per second of wall time."
)
CPU_USAGE_SECONDS_TOTAL = _m(
    "cpu_usage_seconds_total",
    Kind.COUNTER,
    "seconds",
    {_C},
    "CPU time used since the container started.",
)
CPU_THROTTLED_RATIO = _m(
    "cpu_throttled_ratio",
    Kind.RATE,
    "ratio",
    {_C},
    "Share of CFS periods in the interval in which the container was throttled (0..1).",
)
CPU_LIMIT_MILLICORES = _m(
    "cpu_limit_millicores",
    Kind.GAUGE,
    "millicores",
    ALL_LEVELS,
    "CPU limit; rollups sum the limits of limited containers only.",
)
CPU_CAPACITY_MILLICORES = _m(
    "cpu_capacity_millicores", Kind.GAUGE, "millicores", {_N, _CL}, "CPUs of the node(s) x 1000."
)
CPU_REQUEST_MILLICORES = _m(
    "cpu_request_millicores",
    Kind.GAUGE,
    "millicores",
    ALL_LEVELS,
    "CPU requested (Kubernetes); pod totals follow Kubernetes' init-container and sidecar rules.",
)
CPU_ALLOCATABLE_MILLICORES = _m(
    "cpu_allocatable_millicores", Kind.GAUGE, "millicores", {_N, _CL}, "CPU the scheduler may hand to pods."
)
MEMORY_REQUEST_BYTES = _m(
    "memory_request_bytes", Kind.GAUGE, "bytes", ALL_LEVELS, "Memory requested (Kubernetes)."
)
MEMORY_ALLOCATABLE_BYTES = _m(
    "memory_allocatable_bytes", Kind.GAUGE, "bytes", {_N, _CL}, "Memory the scheduler may hand to pods."
)
FS_USAGE_BYTES = _m(
    "fs_usage_bytes",
    Kind.GAUGE,
    "bytes",
    {_C, _P, _N},
    "Filesystem bytes used (writable layer, volumes, node root fs).",
)
FS_CAPACITY_BYTES = _m(
    "fs_capacity_bytes",
    Kind.GAUGE,
    "bytes",
    {_C, _N},
    "Capacity of the filesystem backing fs_usage_bytes.",
)
RESTART_COUNT = _m(
    "restart_count",
    Kind.GAUGE,
    "restarts",
    ALL_LEVELS,
    "Container restarts as the runtime counts them, summed.",
)
MEMORY_USAGE_BYTES = _m(
    "memory_usage_bytes", Kind.GAUGE, "bytes", ALL_LEVELS, "Memory in use, page cache included."
)
MEMORY_WORKING_SET_BYTES = _m(
    "memory_working_set_bytes",
    Kind.GAUGE,
    "bytes",
    ALL_LEVELS,
    "Memory in use minus inactive file cache: what the OOM killer and kubelet eviction look at.",
)
MEMORY_RSS_BYTES = _m("memory_rss_bytes", Kind.GAUGE, "bytes", {_C, _P, _NS}, "Anonymous memory (RSS).")
MEMORY_CACHE_BYTES = _m(
    "memory_cache_bytes", Kind.GAUGE, "bytes", {_C, _P, _NS}, "Page cache, shared memory included."
)
MEMORY_LIMIT_BYTES = _m(
    "memory_limit_bytes",
    Kind.GAUGE,
    "bytes",
    ALL_LEVELS,
    "Memory limit; rollups sum the limits of limited containers only.",
)
MEMORY_CAPACITY_BYTES = _m(
    "memory_capacity_bytes", Kind.GAUGE, "bytes", {_N, _CL}, "Physical memory of the node(s)."
)
NETWORK_RX_BYTES_PER_SECOND = _m(
    "network_rx_bytes_per_second",
    Kind.RATE,
    "bytes/s",
    ALL_LEVELS,
    "Bytes received per second, summed over interfaces.",
)
NETWORK_TX_BYTES_PER_SECOND = _m(
    "network_tx_bytes_per_second",
    Kind.RATE,
    "bytes/s",
    ALL_LEVELS,
    "Bytes sent per second, summed over interfaces.",
)
_NET_DETAIL_LEVELS = {_C, _P, _NS}
NETWORK_RX_PACKETS_PER_SECOND = _m(
    "network_rx_packets_per_second",
    Kind.RATE,
    "packets/s",
    _NET_DETAIL_LEVELS,
    "Packets received per second.",
)
NETWORK_TX_PACKETS_PER_SECOND = _m(
    "network_tx_packets_per_second", Kind.RATE, "packets/s", _NET_DETAIL_LEVELS, "Packets sent per second."
)
NETWORK_RX_ERRORS_PER_SECOND = _m(
    "network_rx_errors_per_second", Kind.RATE, "errors/s", _NET_DETAIL_LEVELS, "Receive errors per second."
)
NETWORK_TX_ERRORS_PER_SECOND = _m(
    "network_tx_errors_per_second", Kind.RATE, "errors/s", _NET_DETAIL_LEVELS, "Transmit errors per second."
)
NETWORK_RX_DROPPED_PER_SECOND = _m(
    "network_rx_dropped_per_second",
    Kind.RATE,
    "packets/s",
    _NET_DETAIL_LEVELS,
    "Received packets dropped per second.",
)
NETWORK_TX_DROPPED_PER_SECOND = _m(
    "network_tx_dropped_per_second",
    Kind.RATE,
    "packets/s",
    _NET_DETAIL_LEVELS,
    "Transmitted packets dropped per second.",
)
DISK_READ_BYTES_PER_SECOND = _m(
    "disk_read_bytes_per_second", Kind.RATE, "bytes/s", {_C, _P, _NS}, "Block device bytes read per second."
)
DISK_WRITE_BYTES_PER_SECOND = _m(
    "disk_write_bytes_per_second",
    Kind.RATE,
    "bytes/s",
    {_C, _P, _NS},
    "Block device bytes written per second.",
)
PROCESS_COUNT = _m("process_count", Kind.GAUGE, "processes", {_C, _P, _NS}, "Processes and threads (pids).")
CONTAINER_COUNT = _m(
    "container_count", Kind.GAUGE, "containers", {_P, _NS, _N, _CL}, "Running containers reported."
)
POD_COUNT = _m("pod_count", Kind.GAUGE, "pods", {_NS, _N, _CL}, "Pods with at least one running container.")
NODE_COUNT = _m("node_count", Kind.GAUGE, "nodes", {_CL}, "Nodes that reported in the interval.")

METRICS: tuple[Metric, ...] = tuple(
    value for name, value in sorted(globals().items()) if isinstance(value, Metric) and name.isupper()
)
"""Every field, sorted by constant name."""

BY_NAME: dict[str, Metric] = {metric.name: metric for metric in METRICS}


def fields_for(level: Level) -> tuple[Metric, ...]:
    """Every field the measurement of ``level`` may carry."""
    return tuple(metric for metric in METRICS if level in metric.levels)


def tags_for(level: Level) -> tuple[Tag, ...]:
    """Every tag the measurement of ``level`` may carry (always-present first)."""
    return TAGS_BY_LEVEL[level] + OPTIONAL_TAGS_BY_LEVEL.get(level, ())

"""The one table from Heapster's metric names to kpulse's catalog fields, and the levels Heapster named.

Heapster's model API named metrics ``group/name`` (``cpu/usage_rate``) and served integer values in the
units below; every kpulse field already carries the same unit, so a value passes through unchanged (then
rounded, never negative). The levels on which a metric exists come from the catalog.

Usage::

    HEAPSTER_METRICS["cpu/usage_rate"].field        # "cpu_usage_millicores"
    metrics_for(Level.NODE)                          # Heapster metrics a node may have
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aggregator import catalog
from aggregator.catalog import Level, Metric


@dataclass(frozen=True, slots=True)
class HeapsterMetric:
    """A Heapster metric name and the catalog field that holds it (same unit)."""

    name: str
    metric: Metric

    @property
    def field(self) -> str:
        """The InfluxDB field name."""
        return self.metric.name

    @property
    def levels(self) -> frozenset[Level]:
        """The levels whose measurement may carry the field (from the catalog)."""
        return self.metric.levels


_TABLE: tuple[tuple[str, Metric], ...] = (
    ("cpu/usage_rate", catalog.CPU_USAGE_MILLICORES),
    ("cpu/request", catalog.CPU_REQUEST_MILLICORES),
    ("cpu/limit", catalog.CPU_LIMIT_MILLICORES),
    ("cpu/node_capacity", catalog.CPU_CAPACITY_MILLICORES),
    ("cpu/node_allocatable", catalog.CPU_ALLOCATABLE_MILLICORES),
    ("memory/usage", catalog.MEMORY_USAGE_BYTES),
    ("memory/working_set", catalog.MEMORY_WORKING_SET_BYTES),
    ("memory/rss", catalog.MEMORY_RSS_BYTES),
    ("memory/cache", catalog.MEMORY_CACHE_BYTES),
    ("memory/request", catalog.MEMORY_REQUEST_BYTES),
    ("memory/limit", catalog.MEMORY_LIMIT_BYTES),
    ("memory/node_capacity", catalog.MEMORY_CAPACITY_BYTES),
    ("memory/node_allocatable", catalog.MEMORY_ALLOCATABLE_BYTES),
    ("network/rx_rate", catalog.NETWORK_RX_BYTES_PER_SECOND),
    ("network/tx_rate", catalog.NETWORK_TX_BYTES_PER_SECOND),
    ("network/rx_errors_rate", catalog.NETWORK_RX_ERRORS_PER_SECOND),
    ("network/tx_errors_rate", catalog.NETWORK_TX_ERRORS_PER_SECOND),
    ("filesystem/usage", catalog.FS_USAGE_BYTES),
    ("filesystem/limit", catalog.FS_CAPACITY_BYTES),
    ("disk/io_read_bytes_rate", catalog.DISK_READ_BYTES_PER_SECOND),
    ("disk/io_write_bytes_rate", catalog.DISK_WRITE_BYTES_PER_SECOND),
    ("restart_count", catalog.RESTART_COUNT),
)

HEAPSTER_METRICS: Mapping[str, HeapsterMetric] = {
    name: HeapsterMetric(name, metric) for name, metric in _TABLE
}
"""Heapster name -> metric, in the table's order."""

BY_FIELD: Mapping[str, HeapsterMetric] = {entry.field: entry for entry in HEAPSTER_METRICS.values()}
"""Catalog field -> Heapster metric (each field has one Heapster name)."""

SERVED_FIELDS: tuple[str, ...] = tuple(BY_FIELD)
"""Every field the query API reads: the in-memory store keeps these and nothing else. The metrics.k8s.io
API needs ``cpu_usage_millicores`` and ``memory_working_set_bytes``, both in the table."""


def metrics_for(level: Level) -> tuple[HeapsterMetric, ...]:
    """The Heapster metrics the catalog allows on ``level``, in table order."""
    return tuple(entry for entry in HEAPSTER_METRICS.values() if level in entry.levels)

"""The wire format between collector and aggregator: one typed batch per node scrape.

The collector owns these models; the aggregator imports them to validate what it receives. Values are
what the node reported, untouched: cumulative counters stay cumulative (the aggregator turns them into
rates), gauges are instantaneous. A field the source did not report is ``None`` and absent from the
JSON, never zero.

Usage::

    batch = Batch(node="n1", source="docker", scraped_at_ns=time.time_ns(), interval_seconds=10,
                  containers=[ContainerSample(...)], pods=[PodSample(...)], node_sample=NodeSample(...))
    body = batch.model_dump_json(exclude_none=True)
    again = Batch.model_validate_json(body)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

WIRE_SCHEMA_VERSION = 1

Counter = Annotated[int, Field(ge=0, le=2**63 - 1)]
"""A cumulative counter as the kernel reports it: non-negative, fits in 64 bits."""
Gauge = Annotated[int, Field(ge=0, le=2**63 - 1)]
"""An instantaneous non-negative integer reading (bytes, counts)."""
Name = Annotated[str, Field(min_length=1, max_length=253)]
TimestampNs = Annotated[int, Field(ge=0, le=2**63 - 1)]


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NetworkCounters(_Wire):
    """Network counters summed over a network namespace's interfaces (cumulative)."""

    rx_bytes_total: Counter | None = None
    tx_bytes_total: Counter | None = None
    rx_packets_total: Counter | None = None
    tx_packets_total: Counter | None = None
    rx_errors_total: Counter | None = None
    tx_errors_total: Counter | None = None
    rx_dropped_total: Counter | None = None
    tx_dropped_total: Counter | None = None


class ContainerSample(_Wire):
    """One container's reading at ``timestamp_ns`` (the source's own read time)."""

    container_id: Name
    """Runtime id; a new id is a new series (no rate across it)."""
    started_at_ns: TimestampNs | None = None
    """Start time of the current incarnation; a change means a restart (no rate across it)."""
    timestamp_ns: TimestampNs
    namespace: Name
    pod: Name
    container: Name
    workload: Name | None = None
    workload_kind: Name | None = None

    cpu_usage_nanoseconds_total: Counter | None = None
    cpu_user_nanoseconds_total: Counter | None = None
    cpu_system_nanoseconds_total: Counter | None = None
    cpu_periods_total: Counter | None = None
    cpu_throttled_periods_total: Counter | None = None
    cpu_throttled_nanoseconds_total: Counter | None = None
    cpu_limit_millicores: Gauge | None = None
    cpu_request_millicores: Gauge | None = None

    memory_usage_bytes: Gauge | None = None
    memory_working_set_bytes: Gauge | None = None
    memory_rss_bytes: Gauge | None = None
    memory_cache_bytes: Gauge | None = None
    memory_limit_bytes: Gauge | None = None
    """Only when the container is limited; an unlimited container has no limit, not the host's RAM."""
    memory_request_bytes: Gauge | None = None

    network: NetworkCounters | None = None
    """The container's own network namespace; ``None`` when it shares its pod's (Kubernetes)."""

    disk_read_bytes_total: Counter | None = None
    disk_write_bytes_total: Counter | None = None
    process_count: Gauge | None = None
    restart_count: Gauge | None = None

    fs_usage_bytes: Gauge | None = None
    fs_capacity_bytes: Gauge | None = None


class PodSample(_Wire):
    """What belongs to a pod rather than to one of its containers (its network namespace)."""

    namespace: Name
    pod: Name
    pod_id: Name
    """Sandbox container id (Docker) or pod UID (kubelet); a new id is a new network series."""
    timestamp_ns: TimestampNs
    workload: Name | None = None
    workload_kind: Name | None = None
    labels: Annotated[dict[str, str], Field(max_length=256)] | None = None
    """The pod's labels (Kubernetes) or its container's labels (Docker), for label selectors in the query API;
    never written to InfluxDB as tags."""
    network: NetworkCounters | None = None

    # The pod's own totals as Kubernetes reckons them (init containers, sidecars, pod overhead, pod-level
    # resources), which can exceed the sum of its running containers'. Kubelet source only; when absent,
    # the pod's value is the sum of its containers'.
    cpu_request_millicores: Gauge | None = None
    cpu_limit_millicores: Gauge | None = None
    memory_request_bytes: Gauge | None = None
    memory_limit_bytes: Gauge | None = None


class NodeSample(_Wire):
    """The whole node: its own usage (not only containers) and its capacity."""

    timestamp_ns: TimestampNs
    labels: Annotated[dict[str, str], Field(max_length=256)] | None = None
    """The node object's labels when the source knows them (kubelet), for label selectors."""
    boot_time_ns: TimestampNs | None = None
    """A change means the node rebooted and its counters restarted (no rate across it)."""
    cpu_usage_nanoseconds_total: Counter | None = None
    cpu_capacity_millicores: Gauge | None = None
    cpu_allocatable_millicores: Gauge | None = None
    memory_usage_bytes: Gauge | None = None
    memory_working_set_bytes: Gauge | None = None
    memory_capacity_bytes: Gauge | None = None
    memory_allocatable_bytes: Gauge | None = None
    network: NetworkCounters | None = None
    fs_usage_bytes: Gauge | None = None
    fs_capacity_bytes: Gauge | None = None


class Batch(_Wire):
    """One scrape of one node, shipped as one gzip JSON body to ``POST /api/v1/ingest``."""

    schema_version: Literal[1] = 1
    batch_id: Annotated[str, Field(min_length=1, max_length=64)]
    """Unique per scrape (node + scrape time); lets the aggregator recognise a resent batch."""
    node: Name
    source: Literal["docker", "kubelet"]
    scraped_at_ns: TimestampNs
    """When the scrape started (the scheduled tick); points are written at this tick's bucket."""
    interval_seconds: Annotated[float, Field(gt=0, le=3600)]
    node_sample: NodeSample | None = None
    containers: Annotated[list[ContainerSample], Field(max_length=20_000)] = []
    pods: Annotated[list[PodSample], Field(max_length=20_000)] = []

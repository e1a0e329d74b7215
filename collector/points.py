"""A batch as point-shaped JSON objects, the way ``python -m collector --once`` prints it.

The values are the node's raw readings (cumulative counters stay cumulative, named ``*_total``); turning
them into rates and rollups is the aggregator's job.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from collector.wire import Batch, ContainerSample, NetworkCounters, NodeSample, PodSample

_IDENTITY = frozenset({"container_id", "started_at_ns", "timestamp_ns", "boot_time_ns", "pod_id"})
_TAGS = ("namespace", "pod", "container", "workload", "workload_kind")


def batch_points(batch: Batch) -> Iterator[dict[str, Any]]:
    """Yield ``{"measurement", "tags", "fields", "time"}`` for the node, each pod and each container."""
    if batch.node_sample is not None:
        yield _point("node", {"node": batch.node}, batch.node_sample)
    for pod in batch.pods:
        yield _point("pod", {"node": batch.node, **_tags(pod)}, pod)
    for container in batch.containers:
        yield _point("container", {"node": batch.node, **_tags(container)}, container)


def _tags(sample: ContainerSample | PodSample) -> dict[str, str]:
    return {name: value for name in _TAGS if isinstance(value := getattr(sample, name, None), str)}


def _point(
    measurement: str, tags: dict[str, str], sample: ContainerSample | PodSample | NodeSample
) -> dict[str, Any]:
    fields: dict[str, int] = {}
    for name, value in sample:
        if isinstance(value, NetworkCounters):
            fields.update({f"network_{key}": count for key, count in value if count is not None})
        elif isinstance(value, int) and name not in _IDENTITY:
            fields[name] = value
    return {"measurement": measurement, "tags": tags, "fields": fields, "time": sample.timestamp_ns}

"""Panels that several dashboards draw alike, each made from the dashboard's own scoped queries.

Usage::

    per_pod = Scoped(Level.POD, where=(Tag.CLUSTER, Tag.NODE), by=(Tag.NAMESPACE, Tag.POD))
    layout.add(pods_table("Pods on this node", per_pod, TO_POD), width=24, height=10)
"""

from __future__ import annotations

from aggregator import catalog
from aggregator.catalog import Tag
from dashboards.errors import DefinitionError
from dashboards.house import Aggregate, GrafanaObject, Link, Scoped, series, table, timeseries


def _require_per(scope: Scoped, tag: Tag) -> str:
    if not scope.by or scope.by[-1] is not tag:
        raise DefinitionError(f"a per-{tag.value} panel needs a scope grouped by {tag.value} last")
    return f"$tag_{tag.value}"


def pods_table(title: str, per_pod: Scoped, link: Link) -> GrafanaObject:
    """One row per pod: mean CPU (cores) and memory (bytes) over the range, restarts, running containers."""
    _require_per(per_pod, Tag.POD)
    return table(
        title,
        "Each pod's mean use over the time range and its restarts. Click a pod for its Pod dashboard.",
        [
            per_pod.column(catalog.CPU_USAGE_MILLICORES, "CPU used"),
            per_pod.column(catalog.MEMORY_WORKING_SET_BYTES, "memory used"),
            per_pod.column(catalog.RESTART_COUNT, "restarts", Aggregate.MAX),
            per_pod.column(catalog.CONTAINER_COUNT, "containers", Aggregate.LAST),
        ],
        sort_by="CPU used",
        link=link,
    )


def memory_composition(per_container: Scoped) -> GrafanaObject:
    """Each container's RSS and page cache (bytes), one series each."""
    entity = _require_per(per_container, Tag.CONTAINER)
    return timeseries(
        "Memory by container: RSS and page cache",
        "What each container's memory is made of: anonymous memory (RSS) and page cache.",
        [
            series(per_container(catalog.MEMORY_RSS_BYTES, "RSS"), f"{entity} RSS"),
            series(per_container(catalog.MEMORY_CACHE_BYTES, "cache"), f"{entity} cache"),
        ],
        legend_table=True,
    )


def processes(per_container: Scoped) -> GrafanaObject:
    """Each container's processes and threads (a count), the highest in each bucket."""
    _require_per(per_container, Tag.CONTAINER)
    return timeseries(
        "Processes by container",
        "Processes and threads in each container.",
        [series(per_container(catalog.PROCESS_COUNT, "processes", Aggregate.MAX))],
    )

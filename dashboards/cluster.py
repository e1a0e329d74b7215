"""The Cluster overview dashboard: is the cluster full, who uses it, and which nodes and namespaces stand out.

It answers the questions of kube-prometheus' "Compute Resources / Cluster" and Heapster's "Cluster"
dashboards on kpulse's InfluxDB schema: usage against capacity, allocatable, requests and limits, split by
node and by namespace; network; the heaviest pods; restarts. Totals come from the ``cluster`` and
``namespace`` rollups (sums written by the aggregator), never from averaging entities.
"""

from __future__ import annotations

from aggregator import catalog
from aggregator.catalog import Level, Metric, Tag
from dashboards.house import (
    Aggregate,
    GrafanaObject,
    Layout,
    Line,
    Link,
    Select,
    TopN,
    Uid,
    Variable,
    kpulse_dashboard,
    reference_lines,
    series,
    stat,
    table,
    timeseries,
)

UID = Uid.CLUSTER
TITLE = "kpulse / Cluster overview"

IN_CLUSTER = (Tag.CLUSTER,)
VARIABLES = (Variable(Tag.CLUSTER, Level.CLUSTER),)

TO_NODE = Link("Node ${__field.labels.node}", Uid.NODE, keep=IN_CLUSTER, take=(Tag.NODE,))
TO_NODE_ROW = Link("Node ${__data.fields.node}", Uid.NODE, keep=IN_CLUSTER, take=(Tag.NODE,))
TO_NAMESPACE = Link(
    "Namespace ${__field.labels.namespace}", Uid.NAMESPACE, keep=IN_CLUSTER, take=(Tag.NAMESPACE,)
)
TO_NAMESPACE_ROW = Link(
    "Namespace ${__data.fields.namespace}", Uid.NAMESPACE, keep=IN_CLUSTER, take=(Tag.NAMESPACE,)
)
TO_POD_ROW = Link("Pod ${__data.fields.pod}", Uid.POD, keep=IN_CLUSTER, take=(Tag.NAMESPACE, Tag.POD))


def cluster(metric: Metric, label: str, aggregate: Aggregate = Aggregate.MEAN) -> Select:
    """``metric`` of the whole cluster (the ``cluster`` rollup), over time."""
    return Select(metric, Level.CLUSTER, label, where=IN_CLUSTER, aggregate=aggregate)


def per(
    level: Level,
    metric: Metric,
    label: str,
    *,
    over_time: bool = True,
    aggregate: Aggregate = Aggregate.MEAN,
) -> Select:
    """``metric`` of each node or namespace of the cluster (grouped by the level's own tag)."""
    by = (Tag.NODE,) if level is Level.NODE else (Tag.NAMESPACE,)
    return Select(metric, level, label, where=IN_CLUSTER, by=by, over_time=over_time, aggregate=aggregate)


def _last(metric: Metric, label: str) -> Select:
    return cluster(metric, label, Aggregate.LAST)


def _usage_against_limits(resource: str, used: Metric, lines: dict[Line, Metric]) -> GrafanaObject:
    return timeseries(
        f"{resource}: used vs capacity, allocatable, requests and limits",
        f"The cluster's {resource.lower()} use against what its nodes have (capacity), what the scheduler "
        "may hand out (allocatable) and what pods asked for (requests) or may not exceed (limits).",
        [series(cluster(used, "used")), *reference_lines(_last, lines)],
    )


def _quota_table(resource: str, used: Metric, request: Metric, limit: Metric) -> GrafanaObject:
    return table(
        f"{resource} by namespace: used vs requests and limits",
        f"Each namespace's mean {resource.lower()} use over the time range next to the sums of its pods' "
        "requests and limits (a namespace over its requests is borrowing from others).",
        [
            per(Level.NAMESPACE, used, "used", over_time=False),
            per(Level.NAMESPACE, request, "requests", over_time=False),
            per(Level.NAMESPACE, limit, "limits", over_time=False),
        ],
        link=TO_NAMESPACE_ROW,
    )


def build() -> GrafanaObject:
    """The Cluster overview dashboard."""
    layout = Layout()
    layout.row("Cluster")
    for title, summary, query in (
        ("CPU used", "Cores busy across all nodes.", cluster(catalog.CPU_USAGE_MILLICORES, "used")),
        (
            "CPU capacity",
            "Cores of all nodes.",
            cluster(catalog.CPU_CAPACITY_MILLICORES, "capacity", Aggregate.LAST),
        ),
        (
            "Memory working set",
            "Memory in use across all nodes, inactive page cache excluded.",
            cluster(catalog.MEMORY_WORKING_SET_BYTES, "used"),
        ),
        (
            "Memory capacity",
            "Physical memory of all nodes.",
            cluster(catalog.MEMORY_CAPACITY_BYTES, "capacity", Aggregate.LAST),
        ),
        ("Nodes", "Nodes that reported.", cluster(catalog.NODE_COUNT, "nodes", Aggregate.LAST)),
        ("Pods", "Pods with a running container.", cluster(catalog.POD_COUNT, "pods", Aggregate.LAST)),
    ):
        layout.add(stat(title, summary, series(query)), width=4, height=4)

    layout.row("CPU")
    layout.add(
        _usage_against_limits(
            "CPU",
            catalog.CPU_USAGE_MILLICORES,
            {
                Line.CAPACITY: catalog.CPU_CAPACITY_MILLICORES,
                Line.ALLOCATABLE: catalog.CPU_ALLOCATABLE_MILLICORES,
                Line.REQUEST: catalog.CPU_REQUEST_MILLICORES,
                Line.LIMIT: catalog.CPU_LIMIT_MILLICORES,
            },
        )
    )
    layout.add(
        _quota_table(
            "CPU", catalog.CPU_USAGE_MILLICORES, catalog.CPU_REQUEST_MILLICORES, catalog.CPU_LIMIT_MILLICORES
        )
    )
    layout.add(
        timeseries(
            "CPU by node",
            "Each node's own CPU use (the whole machine, system daemons included), stacked: the top of the "
            "stack is the cluster's total. Click a series for its Node dashboard.",
            [series(per(Level.NODE, catalog.CPU_USAGE_MILLICORES, "CPU"), link=TO_NODE)],
            stack=True,
            legend_table=True,
        )
    )
    layout.add(
        timeseries(
            "CPU by namespace",
            "Each namespace's CPU use (the sum of its pods), stacked. Click a series for its Namespace "
            "dashboard.",
            [series(per(Level.NAMESPACE, catalog.CPU_USAGE_MILLICORES, "CPU"), link=TO_NAMESPACE)],
            stack=True,
            legend_table=True,
        )
    )

    layout.row("Memory")
    layout.add(
        _usage_against_limits(
            "Memory",
            catalog.MEMORY_WORKING_SET_BYTES,
            {
                Line.CAPACITY: catalog.MEMORY_CAPACITY_BYTES,
                Line.ALLOCATABLE: catalog.MEMORY_ALLOCATABLE_BYTES,
                Line.REQUEST: catalog.MEMORY_REQUEST_BYTES,
                Line.LIMIT: catalog.MEMORY_LIMIT_BYTES,
            },
        )
    )
    layout.add(
        _quota_table(
            "Memory",
            catalog.MEMORY_WORKING_SET_BYTES,
            catalog.MEMORY_REQUEST_BYTES,
            catalog.MEMORY_LIMIT_BYTES,
        )
    )
    layout.add(
        timeseries(
            "Memory working set by node",
            "Each node's memory in use (inactive page cache excluded), stacked. Click a series for its Node "
            "dashboard.",
            [series(per(Level.NODE, catalog.MEMORY_WORKING_SET_BYTES, "memory"), link=TO_NODE)],
            stack=True,
            legend_table=True,
        )
    )
    layout.add(
        timeseries(
            "Memory working set by namespace",
            "Each namespace's memory in use (the sum of its pods), stacked. Click a series for its Namespace "
            "dashboard.",
            [series(per(Level.NAMESPACE, catalog.MEMORY_WORKING_SET_BYTES, "memory"), link=TO_NAMESPACE)],
            stack=True,
            legend_table=True,
        )
    )

    layout.row("Nodes")
    layout.add(
        table(
            "Nodes",
            "Each node's mean use over the time range next to what it has and what it may hand to pods. "
            "Click a node for its Node dashboard.",
            [
                per(Level.NODE, catalog.CPU_USAGE_MILLICORES, "CPU used", over_time=False),
                per(
                    Level.NODE,
                    catalog.CPU_CAPACITY_MILLICORES,
                    "CPU capacity",
                    over_time=False,
                    aggregate=Aggregate.LAST,
                ),
                per(
                    Level.NODE,
                    catalog.CPU_ALLOCATABLE_MILLICORES,
                    "CPU allocatable",
                    over_time=False,
                    aggregate=Aggregate.LAST,
                ),
                per(Level.NODE, catalog.MEMORY_WORKING_SET_BYTES, "memory used", over_time=False),
                per(
                    Level.NODE,
                    catalog.MEMORY_CAPACITY_BYTES,
                    "memory capacity",
                    over_time=False,
                    aggregate=Aggregate.LAST,
                ),
                per(
                    Level.NODE,
                    catalog.MEMORY_ALLOCATABLE_BYTES,
                    "memory allocatable",
                    over_time=False,
                    aggregate=Aggregate.LAST,
                ),
                per(Level.NODE, catalog.POD_COUNT, "pods", over_time=False, aggregate=Aggregate.LAST),
            ],
            sort_by="CPU used",
            link=TO_NODE_ROW,
        ),
        width=24,
    )

    layout.row("Network")
    for level, what in ((Level.NODE, "node"), (Level.NAMESPACE, "namespace")):
        link = TO_NODE if level is Level.NODE else TO_NAMESPACE
        tag = "$tag_node" if level is Level.NODE else "$tag_namespace"
        layout.add(
            timeseries(
                f"Network by {what}",
                f"Bytes each {what} receives (above the axis) and sends (below), stacked.",
                [
                    series(
                        per(level, catalog.NETWORK_RX_BYTES_PER_SECOND, "receive"),
                        f"{tag} receive",
                        link=link,
                    ),
                    series(
                        per(level, catalog.NETWORK_TX_BYTES_PER_SECOND, "transmit"),
                        f"{tag} transmit",
                        negative=True,
                        link=link,
                    ),
                ],
                stack=True,
                legend_table=True,
            )
        )

    layout.row("Top pods")
    for resource, metric in (
        ("CPU", catalog.CPU_USAGE_MILLICORES),
        ("memory", catalog.MEMORY_WORKING_SET_BYTES),
    ):
        top = TopN(
            Select(
                metric, Level.POD, resource, where=IN_CLUSTER, by=(Tag.NAMESPACE, Tag.POD), over_time=False
            )
        )
        layout.add(
            table(
                f"Top pods by {resource}",
                f"The ten pods with the highest mean {resource} use over the time range. Click a pod for its "
                "Pod dashboard.",
                [top],
                link=TO_POD_ROW,
            )
        )

    layout.row("Restarts and workload")
    layout.add(
        timeseries(
            "Container restarts by namespace",
            "Restarts of the containers in each namespace as the runtime counts them: a rising line is a "
            "crash loop.",
            [
                series(
                    per(Level.NAMESPACE, catalog.RESTART_COUNT, "restarts", aggregate=Aggregate.MAX),
                    link=TO_NAMESPACE,
                )
            ],
            legend_table=True,
        )
    )
    layout.add(
        timeseries(
            "Running pods and containers",
            "Pods with a running container, and running containers, across the cluster.",
            [
                series(cluster(catalog.POD_COUNT, "pods", Aggregate.LAST)),
                series(cluster(catalog.CONTAINER_COUNT, "containers", Aggregate.LAST)),
            ],
        )
    )
    return kpulse_dashboard(
        uid=UID,
        title=TITLE,
        description="The whole cluster: usage against capacity, allocatable, requests and limits; by node "
        "and by namespace; network; top pods; restarts.",
        variables=VARIABLES,
        layout=layout,
    )


dashboard = build()

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
    Scoped,
    TopN,
    Uid,
    Variable,
    kpulse_dashboard,
    mirrored,
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

TO_NODE = Link("Node", Uid.NODE, keep=IN_CLUSTER, take=(Tag.NODE,))
TO_NAMESPACE = Link("Namespace", Uid.NAMESPACE, keep=IN_CLUSTER, take=(Tag.NAMESPACE,))
TO_POD = Link("Pod", Uid.POD, keep=IN_CLUSTER, take=(Tag.NAMESPACE, Tag.POD))

cluster = Scoped(Level.CLUSTER, where=IN_CLUSTER)
"""The whole cluster (the ``cluster`` rollup)."""
per_node = Scoped(Level.NODE, where=IN_CLUSTER, by=(Tag.NODE,))
"""Each node of the cluster (the whole machine)."""
per_namespace = Scoped(Level.NAMESPACE, where=IN_CLUSTER, by=(Tag.NAMESPACE,))
"""Each namespace of the cluster (the rollup of its pods)."""
per_pod = Scoped(Level.POD, where=IN_CLUSTER, by=(Tag.NAMESPACE, Tag.POD))
"""Each pod of the cluster."""


def _usage_against_limits(resource: str, used: Metric, lines: dict[Line, Metric]) -> GrafanaObject:
    return timeseries(
        f"{resource}: used vs capacity, allocatable, requests and limits",
        f"The cluster's {resource.lower()} use against what its nodes have (capacity), what the scheduler "
        "may hand out (allocatable) and what pods asked for (requests) or may not exceed (limits).",
        [series(cluster(used, "used")), *reference_lines(cluster.last, lines)],
    )


def _quota_table(resource: str, used: Metric, request: Metric, limit: Metric) -> GrafanaObject:
    return table(
        f"{resource} by namespace: used vs requests and limits",
        f"Each namespace's mean {resource.lower()} use over the time range next to the sums of its pods' "
        "requests and limits (a namespace over its requests is borrowing from others).",
        [
            per_namespace.column(used, "used"),
            per_namespace.column(request, "requests"),
            per_namespace.column(limit, "limits"),
        ],
        link=TO_NAMESPACE,
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
            cluster.last(catalog.CPU_CAPACITY_MILLICORES, "capacity"),
        ),
        (
            "Memory working set",
            "Memory in use across all nodes, inactive page cache excluded.",
            cluster(catalog.MEMORY_WORKING_SET_BYTES, "used"),
        ),
        (
            "Memory capacity",
            "Physical memory of all nodes.",
            cluster.last(catalog.MEMORY_CAPACITY_BYTES, "capacity"),
        ),
        ("Nodes", "Nodes that reported.", cluster.last(catalog.NODE_COUNT, "nodes")),
        ("Pods", "Pods with a running container.", cluster.last(catalog.POD_COUNT, "pods")),
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
            [series(per_node(catalog.CPU_USAGE_MILLICORES, "CPU"), link=TO_NODE)],
            stack=True,
            legend_table=True,
        )
    )
    layout.add(
        timeseries(
            "CPU by namespace",
            "Each namespace's CPU use (the sum of its pods), stacked. Click a series for its Namespace "
            "dashboard.",
            [series(per_namespace(catalog.CPU_USAGE_MILLICORES, "CPU"), link=TO_NAMESPACE)],
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
            [series(per_node(catalog.MEMORY_WORKING_SET_BYTES, "memory"), link=TO_NODE)],
            stack=True,
            legend_table=True,
        )
    )
    layout.add(
        timeseries(
            "Memory working set by namespace",
            "Each namespace's memory in use (the sum of its pods), stacked. Click a series for its Namespace "
            "dashboard.",
            [series(per_namespace(catalog.MEMORY_WORKING_SET_BYTES, "memory"), link=TO_NAMESPACE)],
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
                per_node.column(catalog.CPU_USAGE_MILLICORES, "CPU used"),
                per_node.column(catalog.CPU_CAPACITY_MILLICORES, "CPU capacity", Aggregate.LAST),
                per_node.column(catalog.CPU_ALLOCATABLE_MILLICORES, "CPU allocatable", Aggregate.LAST),
                per_node.column(catalog.MEMORY_WORKING_SET_BYTES, "memory used"),
                per_node.column(catalog.MEMORY_CAPACITY_BYTES, "memory capacity", Aggregate.LAST),
                per_node.column(catalog.MEMORY_ALLOCATABLE_BYTES, "memory allocatable", Aggregate.LAST),
                per_node.column(catalog.POD_COUNT, "pods", Aggregate.LAST),
            ],
            sort_by="CPU used",
            link=TO_NODE,
        ),
        width=24,
    )

    layout.row("Network")
    for per, what, link in ((per_node, "node", TO_NODE), (per_namespace, "namespace", TO_NAMESPACE)):
        layout.add(
            timeseries(
                f"Network by {what}",
                f"Bytes each {what} receives (above the axis) and sends (below), stacked.",
                mirrored(
                    per(catalog.NETWORK_RX_BYTES_PER_SECOND, "receive"),
                    per(catalog.NETWORK_TX_BYTES_PER_SECOND, "transmit"),
                    f"$tag_{what}",
                    link=link,
                ),
                stack=True,
                legend_table=True,
            )
        )

    layout.row("Top pods")
    for resource, metric in (
        ("CPU", catalog.CPU_USAGE_MILLICORES),
        ("memory", catalog.MEMORY_WORKING_SET_BYTES),
    ):
        top = TopN(per_pod.column(metric, resource))
        layout.add(
            table(
                f"Top pods by {resource}",
                f"The ten pods with the highest mean {resource} use over the time range. Click a pod for its "
                "Pod dashboard.",
                [top],
                link=TO_POD,
            )
        )

    layout.row("Restarts and workload")
    layout.add(
        timeseries(
            "Container restarts by namespace",
            "Restarts of the containers in each namespace as the runtime counts them: a rising line is a "
            "crash loop.",
            [series(per_namespace(catalog.RESTART_COUNT, "restarts", Aggregate.MAX), link=TO_NAMESPACE)],
            legend_table=True,
        )
    )
    layout.add(
        timeseries(
            "Running pods and containers",
            "Pods with a running container, and running containers, across the cluster.",
            [
                series(cluster.last(catalog.POD_COUNT, "pods")),
                series(cluster.last(catalog.CONTAINER_COUNT, "containers")),
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

"""The Node dashboard: one node's usage against what it has, the pods on it, its filesystem and network.

The node's own usage is the whole machine's (read from the host, system daemons included), so it can
exceed the sum of its pods; the per-pod panels stack the ``pod`` measurement of the pods on this node.
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
    Uid,
    Variable,
    kpulse_dashboard,
    reference_lines,
    series,
    stat,
    table,
    timeseries,
)

UID = Uid.NODE
TITLE = "kpulse / Node"

ON_NODE = (Tag.CLUSTER, Tag.NODE)
PER_POD = (Tag.NAMESPACE, Tag.POD)
POD_LEGEND = "$tag_namespace/$tag_pod"
VARIABLES = (
    Variable(Tag.CLUSTER, Level.CLUSTER),
    Variable(Tag.NODE, Level.NODE, where=(Tag.CLUSTER,)),
)

TO_POD = Link("Pod ${__field.labels.pod}", Uid.POD, keep=ON_NODE, take=PER_POD)
TO_POD_ROW = Link("Pod ${__data.fields.pod}", Uid.POD, keep=ON_NODE, take=PER_POD)


def node(metric: Metric, label: str, aggregate: Aggregate = Aggregate.MEAN) -> Select:
    """``metric`` of the selected node, over time."""
    return Select(metric, Level.NODE, label, where=ON_NODE, aggregate=aggregate)


def _node_last(metric: Metric, label: str) -> Select:
    return node(metric, label, Aggregate.LAST)


def per_pod(
    metric: Metric, label: str, *, over_time: bool = True, aggregate: Aggregate = Aggregate.MEAN
) -> Select:
    """``metric`` of each pod on the selected node."""
    return Select(
        metric, Level.POD, label, where=ON_NODE, by=PER_POD, over_time=over_time, aggregate=aggregate
    )


def build() -> GrafanaObject:
    """The Node dashboard."""
    layout = Layout()
    layout.row("Node $node")
    for title, summary, query in (
        ("CPU used", "Cores busy on the whole machine.", node(catalog.CPU_USAGE_MILLICORES, "used")),
        ("CPU capacity", "Cores of the machine.", _node_last(catalog.CPU_CAPACITY_MILLICORES, "capacity")),
        (
            "Memory working set",
            "Memory in use on the machine, inactive page cache excluded.",
            node(catalog.MEMORY_WORKING_SET_BYTES, "used"),
        ),
        ("Memory capacity", "Physical memory.", _node_last(catalog.MEMORY_CAPACITY_BYTES, "capacity")),
        ("Pods", "Pods with a running container on this node.", _node_last(catalog.POD_COUNT, "pods")),
        ("Containers", "Running containers on this node.", _node_last(catalog.CONTAINER_COUNT, "containers")),
    ):
        layout.add(stat(title, summary, series(query)), width=4, height=4)

    for resource, used, pod_label, lines in (
        (
            "CPU",
            catalog.CPU_USAGE_MILLICORES,
            "CPU",
            {
                Line.CAPACITY: catalog.CPU_CAPACITY_MILLICORES,
                Line.ALLOCATABLE: catalog.CPU_ALLOCATABLE_MILLICORES,
                Line.REQUEST: catalog.CPU_REQUEST_MILLICORES,
                Line.LIMIT: catalog.CPU_LIMIT_MILLICORES,
            },
        ),
        (
            "Memory",
            catalog.MEMORY_WORKING_SET_BYTES,
            "memory",
            {
                Line.CAPACITY: catalog.MEMORY_CAPACITY_BYTES,
                Line.ALLOCATABLE: catalog.MEMORY_ALLOCATABLE_BYTES,
                Line.REQUEST: catalog.MEMORY_REQUEST_BYTES,
                Line.LIMIT: catalog.MEMORY_LIMIT_BYTES,
            },
        ),
    ):
        layout.row(resource)
        layout.add(
            timeseries(
                f"{resource}: used vs capacity, allocatable, requests and limits",
                f"The node's own {resource.lower()} use (the whole machine) against what it has, what the "
                "scheduler may hand to pods, and the sums of its pods' requests and limits.",
                [series(node(used, "used")), *reference_lines(_node_last, lines)],
            )
        )
        layout.add(
            timeseries(
                f"{resource} by pod",
                f"The {resource.lower()} each pod on this node uses, stacked. Click a series for its Pod "
                "dashboard.",
                [series(per_pod(used, pod_label), POD_LEGEND, link=TO_POD)],
                stack=True,
                legend_table=True,
            )
        )

    layout.row("Filesystem")
    layout.add(
        timeseries(
            "Node filesystem: used vs capacity",
            "The node's root filesystem (images, writable layers, logs, emptyDir volumes live there).",
            [
                series(node(catalog.FS_USAGE_BYTES, "used")),
                *reference_lines(_node_last, {Line.CAPACITY: catalog.FS_CAPACITY_BYTES}),
            ],
        )
    )
    layout.add(
        timeseries(
            "Filesystem by pod",
            "Filesystem bytes each pod on this node uses (writable layers and volumes), stacked.",
            [series(per_pod(catalog.FS_USAGE_BYTES, "filesystem"), POD_LEGEND, link=TO_POD)],
            stack=True,
            legend_table=True,
        )
    )

    layout.row("Network")
    layout.add(
        timeseries(
            "Node network",
            "Bytes the node receives (above the axis) and sends (below), all interfaces of the host.",
            [
                series(node(catalog.NETWORK_RX_BYTES_PER_SECOND, "receive")),
                series(node(catalog.NETWORK_TX_BYTES_PER_SECOND, "transmit"), negative=True),
            ],
        )
    )
    layout.add(
        timeseries(
            "Network by pod",
            "Bytes each pod on this node receives (above the axis) and sends (below), stacked.",
            [
                series(
                    per_pod(catalog.NETWORK_RX_BYTES_PER_SECOND, "receive"),
                    f"{POD_LEGEND} receive",
                    link=TO_POD,
                ),
                series(
                    per_pod(catalog.NETWORK_TX_BYTES_PER_SECOND, "transmit"),
                    f"{POD_LEGEND} transmit",
                    negative=True,
                    link=TO_POD,
                ),
            ],
            stack=True,
            legend_table=True,
        )
    )

    layout.row("Pods")
    layout.add(
        table(
            "Pods on this node",
            "Each pod's mean use over the time range and its restarts. Click a pod for its Pod dashboard.",
            [
                per_pod(catalog.CPU_USAGE_MILLICORES, "CPU used", over_time=False),
                per_pod(catalog.MEMORY_WORKING_SET_BYTES, "memory used", over_time=False),
                per_pod(catalog.RESTART_COUNT, "restarts", over_time=False, aggregate=Aggregate.MAX),
                per_pod(catalog.CONTAINER_COUNT, "containers", over_time=False, aggregate=Aggregate.LAST),
            ],
            sort_by="CPU used",
            link=TO_POD_ROW,
        ),
        width=24,
        height=10,
    )
    return kpulse_dashboard(
        uid=UID,
        title=TITLE,
        description="One node: its own usage against capacity, allocatable, requests and limits; its pods "
        "stacked; filesystem; network.",
        variables=VARIABLES,
        layout=layout,
    )


dashboard = build()

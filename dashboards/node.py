"""The Node dashboard: one node's usage against what it has, the pods on it, its filesystem and network.

The node's own usage is the whole machine's (read from the host, system daemons included), so it can
exceed the sum of its pods; the per-pod panels stack the ``pod`` measurement of the pods on this node.
"""

from __future__ import annotations

from aggregator import catalog
from aggregator.catalog import Level, Tag
from dashboards import panels
from dashboards.house import (
    GrafanaObject,
    Layout,
    Line,
    Link,
    Scoped,
    Uid,
    Variable,
    kpulse_dashboard,
    mirrored,
    reference_lines,
    series,
    stat,
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

TO_POD = Link("Pod", Uid.POD, keep=ON_NODE, take=PER_POD)

node = Scoped(Level.NODE, where=ON_NODE)
"""The selected node (the whole machine)."""
per_pod = Scoped(Level.POD, where=ON_NODE, by=PER_POD)
"""Each pod on the selected node."""


def build() -> GrafanaObject:
    """The Node dashboard."""
    layout = Layout()
    layout.row("Node $node")
    for title, summary, query in (
        ("CPU used", "Cores busy on the whole machine.", node(catalog.CPU_USAGE_MILLICORES, "used")),
        ("CPU capacity", "Cores of the machine.", node.last(catalog.CPU_CAPACITY_MILLICORES, "capacity")),
        (
            "Memory working set",
            "Memory in use on the machine, inactive page cache excluded.",
            node(catalog.MEMORY_WORKING_SET_BYTES, "used"),
        ),
        ("Memory capacity", "Physical memory.", node.last(catalog.MEMORY_CAPACITY_BYTES, "capacity")),
        ("Pods", "Pods with a running container on this node.", node.last(catalog.POD_COUNT, "pods")),
        ("Containers", "Running containers on this node.", node.last(catalog.CONTAINER_COUNT, "containers")),
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
                [series(node(used, "used")), *reference_lines(node.last, lines)],
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
                *reference_lines(node.last, {Line.CAPACITY: catalog.FS_CAPACITY_BYTES}),
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
            mirrored(
                node(catalog.NETWORK_RX_BYTES_PER_SECOND, "receive"),
                node(catalog.NETWORK_TX_BYTES_PER_SECOND, "transmit"),
            ),
        )
    )
    layout.add(
        timeseries(
            "Network by pod",
            "Bytes each pod on this node receives (above the axis) and sends (below), stacked.",
            mirrored(
                per_pod(catalog.NETWORK_RX_BYTES_PER_SECOND, "receive"),
                per_pod(catalog.NETWORK_TX_BYTES_PER_SECOND, "transmit"),
                POD_LEGEND,
                link=TO_POD,
            ),
            stack=True,
            legend_table=True,
        )
    )

    layout.row("Pods")
    layout.add(panels.pods_table("Pods on this node", per_pod, TO_POD), width=24, height=10)
    return kpulse_dashboard(
        uid=UID,
        title=TITLE,
        description="One node: its own usage against capacity, allocatable, requests and limits; its pods "
        "stacked; filesystem; network.",
        variables=VARIABLES,
        layout=layout,
    )


dashboard = build()

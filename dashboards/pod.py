"""The Pod dashboard: a pod's containers against the pod's requests and limits, its network and restarts.

Containers are stacked from the ``container`` measurement, so the top of a stack is the pod's total; the
request and limit lines are the pod's (the sums over its containers, from the ``pod`` measurement). The
network is the pod's own (its network namespace), not a sum over containers.
"""

from __future__ import annotations

from aggregator import catalog
from aggregator.catalog import Level, Tag
from dashboards import panels
from dashboards.house import (
    Aggregate,
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

UID = Uid.POD
TITLE = "kpulse / Pod"

THE_POD = (Tag.CLUSTER, Tag.NODE, Tag.NAMESPACE, Tag.POD)
VARIABLES = (
    Variable(Tag.CLUSTER, Level.CLUSTER),
    # "All" by default: a pod is found by namespace and name; the node only narrows the lists.
    Variable(Tag.NODE, Level.NODE, where=(Tag.CLUSTER,), include_all=True),
    Variable(Tag.NAMESPACE, Level.POD, where=(Tag.CLUSTER, Tag.NODE)),
    Variable(Tag.POD, Level.POD, where=(Tag.CLUSTER, Tag.NODE, Tag.NAMESPACE)),
)

TO_NODE = Link("Node", Uid.NODE, keep=(Tag.CLUSTER,), take=(Tag.NODE,))

pod = Scoped(Level.POD, where=THE_POD)
"""The selected pod: the sum over its containers, or its own network."""
per_container = Scoped(Level.CONTAINER, where=THE_POD, by=(Tag.CONTAINER,))
"""Each container of the selected pod."""
per_node = Scoped(Level.POD, where=THE_POD, by=(Tag.NODE,))
"""The selected pod on each node it ran on."""


def build() -> GrafanaObject:
    """The Pod dashboard."""
    layout = Layout()
    layout.row("Pod $namespace/$pod")
    for title, summary, query in (
        ("CPU used", "Cores the pod's containers keep busy.", pod(catalog.CPU_USAGE_MILLICORES, "used")),
        ("CPU requests", "CPU the pod requested.", pod.last(catalog.CPU_REQUEST_MILLICORES, "requests")),
        (
            "CPU limits",
            "CPU limits of the pod's limited containers.",
            pod.last(catalog.CPU_LIMIT_MILLICORES, "limits"),
        ),
        (
            "Memory working set",
            "Memory the pod uses, inactive page cache excluded.",
            pod(catalog.MEMORY_WORKING_SET_BYTES, "used"),
        ),
        ("Memory requests", "Memory the pod requested.", pod.last(catalog.MEMORY_REQUEST_BYTES, "requests")),
        (
            "Memory limits",
            "Memory limits of the pod's limited containers.",
            pod.last(catalog.MEMORY_LIMIT_BYTES, "limits"),
        ),
    ):
        layout.add(stat(title, summary, series(query)), width=4, height=4)

    layout.row("CPU")
    layout.add(
        timeseries(
            "CPU by container, with the pod's requests and limits",
            "Each container's CPU use, stacked: the top of the stack is the pod's use. A pod at its limit is "
            "throttled; one above its request competes for spare CPU.",
            [
                series(per_container(catalog.CPU_USAGE_MILLICORES, "CPU")),
                *reference_lines(
                    pod.last,
                    {Line.REQUEST: catalog.CPU_REQUEST_MILLICORES, Line.LIMIT: catalog.CPU_LIMIT_MILLICORES},
                ),
            ],
            stack=True,
            legend_table=True,
        )
    )
    layout.add(
        timeseries(
            "CPU throttling by container",
            "The share of scheduler periods in which each container wanted CPU but hit its limit. Only "
            "containers with a CPU limit can be throttled.",
            [series(per_container(catalog.CPU_THROTTLED_RATIO, "throttled"))],
            legend_table=True,
        )
    )

    layout.row("Memory")
    layout.add(
        timeseries(
            "Memory working set by container, with the pod's requests and limits",
            "Each container's working set, stacked: the top of the stack is the pod's. A container whose "
            "working set reaches its limit is OOM-killed.",
            [
                series(per_container(catalog.MEMORY_WORKING_SET_BYTES, "memory")),
                *reference_lines(
                    pod.last,
                    {Line.REQUEST: catalog.MEMORY_REQUEST_BYTES, Line.LIMIT: catalog.MEMORY_LIMIT_BYTES},
                ),
            ],
            stack=True,
            legend_table=True,
        )
    )
    layout.add(panels.memory_composition(per_container))

    layout.row("Network")
    layout.add(
        timeseries(
            "Pod network",
            "Bytes the pod receives (above the axis) and sends (below), all interfaces of its network "
            "namespace.",
            mirrored(
                pod(catalog.NETWORK_RX_BYTES_PER_SECOND, "receive"),
                pod(catalog.NETWORK_TX_BYTES_PER_SECOND, "transmit"),
            ),
        )
    )
    layout.add(
        timeseries(
            "Pod network: packets, errors and drops",
            "Packets the pod receives (above the axis) and sends (below), and the ones in error or dropped: "
            "errors and drops should stay at zero.",
            [
                *mirrored(
                    pod(catalog.NETWORK_RX_PACKETS_PER_SECOND, "received"),
                    pod(catalog.NETWORK_TX_PACKETS_PER_SECOND, "sent"),
                ),
                *mirrored(
                    pod(catalog.NETWORK_RX_ERRORS_PER_SECOND, "receive errors"),
                    pod(catalog.NETWORK_TX_ERRORS_PER_SECOND, "transmit errors"),
                ),
                *mirrored(
                    pod(catalog.NETWORK_RX_DROPPED_PER_SECOND, "received dropped"),
                    pod(catalog.NETWORK_TX_DROPPED_PER_SECOND, "sent dropped"),
                ),
            ],
        )
    )

    layout.row("Containers")
    layout.add(
        timeseries(
            "Restarts by container",
            "Restarts of each container as the runtime counts them: a rising line is a crash loop.",
            [series(per_container(catalog.RESTART_COUNT, "restarts", Aggregate.MAX))],
        ),
        width=8,
    )
    layout.add(panels.processes(per_container), width=8)
    layout.add(
        timeseries(
            "Disk I/O by container",
            "Bytes each container reads from (above the axis) and writes to (below) block devices.",
            mirrored(
                per_container(catalog.DISK_READ_BYTES_PER_SECOND, "read"),
                per_container(catalog.DISK_WRITE_BYTES_PER_SECOND, "write"),
                "$tag_container",
            ),
        ),
        width=8,
    )

    layout.row("Where it runs")
    layout.add(
        timeseries(
            "Pod CPU on its node",
            "The pod's CPU use, one series per node it ran on in the time range. Click a series for the "
            "Node dashboard.",
            [series(per_node(catalog.CPU_USAGE_MILLICORES, "CPU"), link=TO_NODE)],
        ),
        width=24,
        height=6,
    )
    return kpulse_dashboard(
        uid=UID,
        title=TITLE,
        description="One pod: its containers' CPU and memory against the pod's requests and limits; network; "
        "restarts; processes; disk I/O.",
        variables=VARIABLES,
        layout=layout,
    )


dashboard = build()

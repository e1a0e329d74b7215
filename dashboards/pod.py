"""The Pod dashboard: a pod's containers against the pod's requests and limits, its network and restarts.

Containers are stacked from the ``container`` measurement, so the top of a stack is the pod's total; the
request and limit lines are the pod's (the sums over its containers, from the ``pod`` measurement). The
network is the pod's own (its network namespace), not a sum over containers.
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
    timeseries,
)

UID = Uid.POD
TITLE = "kpulse / Pod"

THE_POD = (Tag.CLUSTER, Tag.NODE, Tag.NAMESPACE, Tag.POD)
PER_CONTAINER = (Tag.CONTAINER,)
VARIABLES = (
    Variable(Tag.CLUSTER, Level.CLUSTER),
    # "All" by default: a pod is found by namespace and name; the node only narrows the lists.
    Variable(Tag.NODE, Level.NODE, where=(Tag.CLUSTER,), include_all=True),
    Variable(Tag.NAMESPACE, Level.POD, where=(Tag.CLUSTER, Tag.NODE)),
    Variable(Tag.POD, Level.POD, where=(Tag.CLUSTER, Tag.NODE, Tag.NAMESPACE)),
)

TO_NODE = Link("Node ${__field.labels.node}", Uid.NODE, keep=(Tag.CLUSTER,), take=(Tag.NODE,))


def pod(metric: Metric, label: str, aggregate: Aggregate = Aggregate.MEAN) -> Select:
    """``metric`` of the selected pod (the sum over its containers, or its own network), over time."""
    return Select(metric, Level.POD, label, where=THE_POD, aggregate=aggregate)


def _pod_last(metric: Metric, label: str) -> Select:
    return pod(metric, label, Aggregate.LAST)


def per_container(metric: Metric, label: str, aggregate: Aggregate = Aggregate.MEAN) -> Select:
    """``metric`` of each container of the selected pod."""
    return Select(metric, Level.CONTAINER, label, where=THE_POD, by=PER_CONTAINER, aggregate=aggregate)


def build() -> GrafanaObject:
    """The Pod dashboard."""
    layout = Layout()
    layout.row("Pod $namespace/$pod")
    for title, summary, query in (
        ("CPU used", "Cores the pod's containers keep busy.", pod(catalog.CPU_USAGE_MILLICORES, "used")),
        ("CPU requests", "CPU the pod requested.", _pod_last(catalog.CPU_REQUEST_MILLICORES, "requests")),
        (
            "CPU limits",
            "CPU limits of the pod's limited containers.",
            _pod_last(catalog.CPU_LIMIT_MILLICORES, "limits"),
        ),
        (
            "Memory working set",
            "Memory the pod uses, inactive page cache excluded.",
            pod(catalog.MEMORY_WORKING_SET_BYTES, "used"),
        ),
        ("Memory requests", "Memory the pod requested.", _pod_last(catalog.MEMORY_REQUEST_BYTES, "requests")),
        (
            "Memory limits",
            "Memory limits of the pod's limited containers.",
            _pod_last(catalog.MEMORY_LIMIT_BYTES, "limits"),
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
                    _pod_last,
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
                    _pod_last,
                    {Line.REQUEST: catalog.MEMORY_REQUEST_BYTES, Line.LIMIT: catalog.MEMORY_LIMIT_BYTES},
                ),
            ],
            stack=True,
            legend_table=True,
        )
    )
    layout.add(
        timeseries(
            "Memory by container: RSS and page cache",
            "What each container's memory is made of: anonymous memory (RSS) and page cache.",
            [
                series(per_container(catalog.MEMORY_RSS_BYTES, "RSS"), "$tag_container RSS"),
                series(per_container(catalog.MEMORY_CACHE_BYTES, "cache"), "$tag_container cache"),
            ],
            legend_table=True,
        )
    )

    layout.row("Network")
    layout.add(
        timeseries(
            "Pod network",
            "Bytes the pod receives (above the axis) and sends (below), all interfaces of its network "
            "namespace.",
            [
                series(pod(catalog.NETWORK_RX_BYTES_PER_SECOND, "receive")),
                series(pod(catalog.NETWORK_TX_BYTES_PER_SECOND, "transmit"), negative=True),
            ],
        )
    )
    layout.add(
        timeseries(
            "Pod network: packets, errors and drops",
            "Packets the pod receives (above the axis) and sends (below), and the ones in error or dropped: "
            "errors and drops should stay at zero.",
            [
                series(pod(catalog.NETWORK_RX_PACKETS_PER_SECOND, "received")),
                series(pod(catalog.NETWORK_TX_PACKETS_PER_SECOND, "sent"), negative=True),
                series(pod(catalog.NETWORK_RX_ERRORS_PER_SECOND, "receive errors")),
                series(pod(catalog.NETWORK_TX_ERRORS_PER_SECOND, "transmit errors"), negative=True),
                series(pod(catalog.NETWORK_RX_DROPPED_PER_SECOND, "received dropped")),
                series(pod(catalog.NETWORK_TX_DROPPED_PER_SECOND, "sent dropped"), negative=True),
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
    layout.add(
        timeseries(
            "Processes by container",
            "Processes and threads in each container.",
            [series(per_container(catalog.PROCESS_COUNT, "processes", Aggregate.MAX))],
        ),
        width=8,
    )
    layout.add(
        timeseries(
            "Disk I/O by container",
            "Bytes each container reads from (above the axis) and writes to (below) block devices.",
            [
                series(per_container(catalog.DISK_READ_BYTES_PER_SECOND, "read"), "$tag_container read"),
                series(
                    per_container(catalog.DISK_WRITE_BYTES_PER_SECOND, "write"),
                    "$tag_container write",
                    negative=True,
                ),
            ],
        ),
        width=8,
    )

    layout.row("Where it runs")
    layout.add(
        timeseries(
            "Pod CPU on its node",
            "The pod's CPU use, one series per node it ran on in the time range. Click a series for the "
            "Node dashboard.",
            [
                series(
                    Select(catalog.CPU_USAGE_MILLICORES, Level.POD, "CPU", where=THE_POD, by=(Tag.NODE,)),
                    link=TO_NODE,
                )
            ],
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

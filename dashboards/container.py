"""The Container dashboard, for plain Docker hosts: each container's CPU, memory, network and block I/O.

On a Docker host every container is its own pod (its namespace is its compose project, or the collector's
default), so this dashboard selects containers directly. Series are grouped by namespace, pod and container
(a container's identity), so two containers of the same name in different pods are never averaged
together. Limit lines are per container and only appear for limited containers.
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
    Scoped,
    Uid,
    Variable,
    kpulse_dashboard,
    line,
    mirrored,
    series,
    timeseries,
)

UID = Uid.CONTAINER
TITLE = "kpulse / Containers (Docker host)"

SELECTED = (Tag.CLUSTER, Tag.NODE, Tag.NAMESPACE, Tag.CONTAINER)
PER_CONTAINER = (Tag.NAMESPACE, Tag.POD, Tag.CONTAINER)
VARIABLES = (
    Variable(Tag.CLUSTER, Level.CLUSTER),
    Variable(Tag.NODE, Level.NODE, where=(Tag.CLUSTER,), label="Host"),
    Variable(
        Tag.NAMESPACE,
        Level.CONTAINER,
        where=(Tag.CLUSTER, Tag.NODE),
        include_all=True,
        multi=True,
        label="Project",
    ),
    Variable(
        Tag.CONTAINER,
        Level.CONTAINER,
        where=(Tag.CLUSTER, Tag.NODE, Tag.NAMESPACE),
        include_all=True,
        multi=True,
    ),
)

per_container = Scoped(Level.CONTAINER, where=SELECTED, by=PER_CONTAINER)
"""Each selected container."""


def build() -> GrafanaObject:
    """The Container dashboard."""
    layout = Layout()
    layout.row("CPU")
    layout.add(
        timeseries(
            "CPU by container, with limits",
            "Each container's CPU use; a dashed line is a container's CPU limit (containers started with "
            "--cpus or a CPU quota).",
            [
                series(per_container(catalog.CPU_USAGE_MILLICORES, "CPU")),
                line(
                    per_container.last(catalog.CPU_LIMIT_MILLICORES, "limit"),
                    Line.LIMIT,
                    "$tag_container limit",
                ),
            ],
            legend_table=True,
        )
    )
    layout.add(
        timeseries(
            "CPU throttling by container",
            "The share of scheduler periods in which each limited container wanted CPU but hit its limit.",
            [series(per_container(catalog.CPU_THROTTLED_RATIO, "throttled"))],
            legend_table=True,
        )
    )
    layout.add(
        timeseries(
            "CPU in user and kernel mode by container",
            "Where each container's CPU goes: its own code (user) or the kernel working for it (system).",
            [
                series(per_container(catalog.CPU_USER_MILLICORES, "user"), "$tag_container user"),
                series(per_container(catalog.CPU_SYSTEM_MILLICORES, "system"), "$tag_container system"),
            ],
            legend_table=True,
        ),
        width=24,
    )

    layout.row("Memory")
    layout.add(
        timeseries(
            "Memory working set by container, with limits",
            "Each container's working set; a dashed line is a container's memory limit, where the kernel "
            "OOM-kills it.",
            [
                series(per_container(catalog.MEMORY_WORKING_SET_BYTES, "memory")),
                line(
                    per_container.last(catalog.MEMORY_LIMIT_BYTES, "limit"),
                    Line.LIMIT,
                    "$tag_container limit",
                ),
            ],
            legend_table=True,
        )
    )
    layout.add(panels.memory_composition(per_container))

    layout.row("Network")
    layout.add(
        timeseries(
            "Network by container",
            "Bytes each container receives (above the axis) and sends (below). Containers sharing another's "
            "network (Kubernetes pod containers) have none of their own.",
            mirrored(
                per_container(catalog.NETWORK_RX_BYTES_PER_SECOND, "receive"),
                per_container(catalog.NETWORK_TX_BYTES_PER_SECOND, "transmit"),
                "$tag_container",
            ),
            legend_table=True,
        )
    )
    layout.add(
        timeseries(
            "Network errors and drops by container",
            "Packets received or sent in error, and dropped: these should stay at zero.",
            [
                *mirrored(
                    per_container(catalog.NETWORK_RX_ERRORS_PER_SECOND, "receive errors"),
                    per_container(catalog.NETWORK_TX_ERRORS_PER_SECOND, "transmit errors"),
                    "$tag_container",
                ),
                *mirrored(
                    per_container(catalog.NETWORK_RX_DROPPED_PER_SECOND, "received dropped"),
                    per_container(catalog.NETWORK_TX_DROPPED_PER_SECOND, "sent dropped"),
                    "$tag_container",
                ),
            ],
            legend_table=True,
        )
    )

    layout.row("Block I/O and processes")
    layout.add(
        timeseries(
            "Disk I/O by container",
            "Bytes each container reads from (above the axis) and writes to (below) block devices; "
            "page-cache hits do not count.",
            mirrored(
                per_container(catalog.DISK_READ_BYTES_PER_SECOND, "read"),
                per_container(catalog.DISK_WRITE_BYTES_PER_SECOND, "write"),
                "$tag_container",
            ),
            legend_table=True,
        ),
        width=12,
    )
    layout.add(panels.processes(per_container), width=6)
    layout.add(
        timeseries(
            "Restarts by container",
            "Restarts of each container as Docker counts them (restart policy): a rising line is a crash "
            "loop.",
            [series(per_container(catalog.RESTART_COUNT, "restarts", Aggregate.MAX))],
        ),
        width=6,
    )
    return kpulse_dashboard(
        uid=UID,
        title=TITLE,
        description="Containers of a plain Docker host: CPU and memory against their limits, network, block "
        "I/O, processes, restarts.",
        variables=VARIABLES,
        layout=layout,
    )


dashboard = build()

"""The Namespace dashboard: a namespace's use against its requests and limits, its pods, network, restarts.

Namespace totals come from the ``namespace`` rollup (the sum of its pods across nodes); per-pod panels
stack the ``pod`` measurement.
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

UID = Uid.NAMESPACE
TITLE = "kpulse / Namespace"

IN_NAMESPACE = (Tag.CLUSTER, Tag.NAMESPACE)
PER_POD = (Tag.POD,)
VARIABLES = (
    Variable(Tag.CLUSTER, Level.CLUSTER),
    Variable(Tag.NAMESPACE, Level.NAMESPACE, where=(Tag.CLUSTER,)),
)

TO_POD = Link("Pod", Uid.POD, keep=IN_NAMESPACE, take=PER_POD)

namespace = Scoped(Level.NAMESPACE, where=IN_NAMESPACE)
"""The selected namespace (the rollup of its pods)."""
per_pod = Scoped(Level.POD, where=IN_NAMESPACE, by=PER_POD)
"""Each pod of the selected namespace."""


def build() -> GrafanaObject:
    """The Namespace dashboard."""
    layout = Layout()
    layout.row("Namespace $namespace")
    for title, summary, query in (
        (
            "CPU used",
            "Cores the namespace's pods keep busy.",
            namespace(catalog.CPU_USAGE_MILLICORES, "used"),
        ),
        (
            "CPU requests",
            "CPU the namespace's pods requested.",
            namespace.last(catalog.CPU_REQUEST_MILLICORES, "requests"),
        ),
        (
            "CPU limits",
            "CPU limits of the namespace's limited containers.",
            namespace.last(catalog.CPU_LIMIT_MILLICORES, "limits"),
        ),
        (
            "Memory working set",
            "Memory the namespace's pods use, inactive page cache excluded.",
            namespace(catalog.MEMORY_WORKING_SET_BYTES, "used"),
        ),
        (
            "Memory requests",
            "Memory the namespace's pods requested.",
            namespace.last(catalog.MEMORY_REQUEST_BYTES, "requests"),
        ),
        (
            "Memory limits",
            "Memory limits of the namespace's limited containers.",
            namespace.last(catalog.MEMORY_LIMIT_BYTES, "limits"),
        ),
    ):
        layout.add(stat(title, summary, series(query)), width=4, height=4)

    for resource, used, pod_label, lines in (
        (
            "CPU",
            catalog.CPU_USAGE_MILLICORES,
            "CPU",
            {Line.REQUEST: catalog.CPU_REQUEST_MILLICORES, Line.LIMIT: catalog.CPU_LIMIT_MILLICORES},
        ),
        (
            "Memory",
            catalog.MEMORY_WORKING_SET_BYTES,
            "memory",
            {Line.REQUEST: catalog.MEMORY_REQUEST_BYTES, Line.LIMIT: catalog.MEMORY_LIMIT_BYTES},
        ),
    ):
        layout.row(resource)
        layout.add(
            timeseries(
                f"{resource}: used vs requests and limits",
                f"The namespace's {resource.lower()} use against the sums of its pods' requests and limits "
                "(limits count limited containers only).",
                [series(namespace(used, "used")), *reference_lines(namespace.last, lines)],
            )
        )
        layout.add(
            timeseries(
                f"{resource} by pod",
                f"The {resource.lower()} each pod of the namespace uses, stacked: the top of the stack is "
                "the namespace's total. Click a series for its Pod dashboard.",
                [series(per_pod(used, pod_label), link=TO_POD)],
                stack=True,
                legend_table=True,
            )
        )

    layout.row("Network")
    layout.add(
        timeseries(
            "Namespace network",
            "Bytes the namespace's pods receive (above the axis) and send (below), summed.",
            mirrored(
                namespace(catalog.NETWORK_RX_BYTES_PER_SECOND, "receive"),
                namespace(catalog.NETWORK_TX_BYTES_PER_SECOND, "transmit"),
            ),
        )
    )
    layout.add(
        timeseries(
            "Network by pod",
            "Bytes each pod receives (above the axis) and sends (below), stacked.",
            mirrored(
                per_pod(catalog.NETWORK_RX_BYTES_PER_SECOND, "receive"),
                per_pod(catalog.NETWORK_TX_BYTES_PER_SECOND, "transmit"),
                "$tag_pod",
                link=TO_POD,
            ),
            stack=True,
            legend_table=True,
        )
    )

    layout.row("Pods")
    layout.add(
        timeseries(
            "Container restarts by pod",
            "Restarts of each pod's containers as the runtime counts them: a rising line is a crash loop.",
            [series(per_pod(catalog.RESTART_COUNT, "restarts", Aggregate.MAX), link=TO_POD)],
            legend_table=True,
        )
    )
    layout.add(
        timeseries(
            "Running pods and containers",
            "Pods of the namespace with a running container, and their running containers.",
            [
                series(namespace.last(catalog.POD_COUNT, "pods")),
                series(namespace.last(catalog.CONTAINER_COUNT, "containers")),
            ],
        )
    )
    layout.add(panels.pods_table("Pods", per_pod, TO_POD), width=24, height=10)
    return kpulse_dashboard(
        uid=UID,
        title=TITLE,
        description="One namespace: its pods' use against requests and limits, per pod; network; restarts.",
        variables=VARIABLES,
        layout=layout,
    )


dashboard = build()

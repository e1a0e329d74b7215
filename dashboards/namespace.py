"""The Namespace dashboard: a namespace's use against its requests and limits, its pods, network, restarts.

Namespace totals come from the ``namespace`` rollup (the sum of its pods across nodes); per-pod panels
stack the ``pod`` measurement.
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

UID = Uid.NAMESPACE
TITLE = "kpulse / Namespace"

IN_NAMESPACE = (Tag.CLUSTER, Tag.NAMESPACE)
PER_POD = (Tag.POD,)
VARIABLES = (
    Variable(Tag.CLUSTER, Level.CLUSTER),
    Variable(Tag.NAMESPACE, Level.NAMESPACE, where=(Tag.CLUSTER,)),
)

TO_POD = Link("Pod ${__field.labels.pod}", Uid.POD, keep=IN_NAMESPACE, take=PER_POD)
TO_POD_ROW = Link("Pod ${__data.fields.pod}", Uid.POD, keep=IN_NAMESPACE, take=PER_POD)


def namespace(metric: Metric, label: str, aggregate: Aggregate = Aggregate.MEAN) -> Select:
    """``metric`` of the selected namespace (the rollup of its pods), over time."""
    return Select(metric, Level.NAMESPACE, label, where=IN_NAMESPACE, aggregate=aggregate)


def _namespace_last(metric: Metric, label: str) -> Select:
    return namespace(metric, label, Aggregate.LAST)


def per_pod(
    metric: Metric, label: str, *, over_time: bool = True, aggregate: Aggregate = Aggregate.MEAN
) -> Select:
    """``metric`` of each pod of the selected namespace."""
    return Select(
        metric, Level.POD, label, where=IN_NAMESPACE, by=PER_POD, over_time=over_time, aggregate=aggregate
    )


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
            _namespace_last(catalog.CPU_REQUEST_MILLICORES, "requests"),
        ),
        (
            "CPU limits",
            "CPU limits of the namespace's limited containers.",
            _namespace_last(catalog.CPU_LIMIT_MILLICORES, "limits"),
        ),
        (
            "Memory working set",
            "Memory the namespace's pods use, inactive page cache excluded.",
            namespace(catalog.MEMORY_WORKING_SET_BYTES, "used"),
        ),
        (
            "Memory requests",
            "Memory the namespace's pods requested.",
            _namespace_last(catalog.MEMORY_REQUEST_BYTES, "requests"),
        ),
        (
            "Memory limits",
            "Memory limits of the namespace's limited containers.",
            _namespace_last(catalog.MEMORY_LIMIT_BYTES, "limits"),
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
                [series(namespace(used, "used")), *reference_lines(_namespace_last, lines)],
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
            [
                series(namespace(catalog.NETWORK_RX_BYTES_PER_SECOND, "receive")),
                series(namespace(catalog.NETWORK_TX_BYTES_PER_SECOND, "transmit"), negative=True),
            ],
        )
    )
    layout.add(
        timeseries(
            "Network by pod",
            "Bytes each pod receives (above the axis) and sends (below), stacked.",
            [
                series(
                    per_pod(catalog.NETWORK_RX_BYTES_PER_SECOND, "receive"), "$tag_pod receive", link=TO_POD
                ),
                series(
                    per_pod(catalog.NETWORK_TX_BYTES_PER_SECOND, "transmit"),
                    "$tag_pod transmit",
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
        timeseries(
            "Container restarts by pod",
            "Restarts of each pod's containers as the runtime counts them: a rising line is a crash loop.",
            [series(per_pod(catalog.RESTART_COUNT, "restarts", aggregate=Aggregate.MAX), link=TO_POD)],
            legend_table=True,
        )
    )
    layout.add(
        timeseries(
            "Running pods and containers",
            "Pods of the namespace with a running container, and their running containers.",
            [
                series(_namespace_last(catalog.POD_COUNT, "pods")),
                series(_namespace_last(catalog.CONTAINER_COUNT, "containers")),
            ],
        )
    )
    layout.add(
        table(
            "Pods",
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
        description="One namespace: its pods' use against requests and limits, per pod; network; restarts.",
        variables=VARIABLES,
        layout=layout,
    )


dashboard = build()

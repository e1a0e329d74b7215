"""Wire batches for API tests: a small node with pods and containers, and their gzip bodies."""

from __future__ import annotations

import gzip

from collector.wire import Batch, ContainerSample, NetworkCounters, NodeSample, PodSample

T0 = 1_700_000_000_000_000_000
"""A bucket boundary at 10 s resolution (ns)."""
SECOND = 1_000_000_000


def make_batch(
    *, node: str = "n1", scraped_at_ns: int = T0, containers: int = 2, batch_id: str | None = None
) -> Batch:
    """One scrape of ``node`` at ``scraped_at_ns`` with ``containers`` containers in two pods."""
    elapsed = (scraped_at_ns - T0) // SECOND
    samples = [
        ContainerSample(
            container_id=f"{node}-c{i}",
            started_at_ns=T0 - 3600 * SECOND,
            timestamp_ns=scraped_at_ns,
            namespace="shop",
            pod=f"web-{i % 2}",
            container=f"app{i}",
            cpu_usage_nanoseconds_total=(1000 + elapsed) * SECOND // 10,
            memory_usage_bytes=100 * 2**20 + i,
            memory_working_set_bytes=80 * 2**20 + i,
        )
        for i in range(containers)
    ]
    pods = [
        PodSample(
            namespace="shop",
            pod=f"web-{i}",
            pod_id=f"{node}-sandbox-{i}",
            timestamp_ns=scraped_at_ns,
            network=NetworkCounters(
                rx_bytes_total=10_000 + elapsed * 1000, tx_bytes_total=5_000 + elapsed * 500
            ),
        )
        for i in range(min(containers, 2))
    ]
    return Batch(
        batch_id=batch_id or f"{node}-{scraped_at_ns}",
        node=node,
        source="docker",
        scraped_at_ns=scraped_at_ns,
        interval_seconds=10,
        node_sample=NodeSample(
            timestamp_ns=scraped_at_ns,
            cpu_usage_nanoseconds_total=(5000 + elapsed) * SECOND,
            cpu_capacity_millicores=4000,
            memory_capacity_bytes=8 * 2**30,
            memory_usage_bytes=2 * 2**30,
        ),
        containers=samples,
        pods=pods,
    )


def json_body(batch: Batch) -> bytes:
    """The batch as the collector serialises it."""
    return batch.model_dump_json(exclude_none=True).encode()


def gzip_body(batch: Batch) -> bytes:
    """The batch as the collector ships it."""
    return gzip.compress(json_body(batch))

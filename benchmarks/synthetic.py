"""A simulated cluster whose nodes produce kubelet-style batches, counters advancing plausibly per scrape.

Each node runs ``pods_per_node`` pods of ``containers_per_pod`` containers; pods belong to Deployments spread
over a few namespaces; the network is the pod's (as with the kubelet source), so containers carry none.
Counters grow by a per-container rate with some jitter; gauges wander. Deterministic for one seed.

Usage::

    cluster = SyntheticCluster(nodes=100)
    batches = cluster.scrape(scraped_at_ns=time.time_ns())   # one Batch per node, next scrape each call
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass

from collector.wire import Batch, ContainerSample, NetworkCounters, NodeSample, PodSample

NAMESPACES = ("shop", "payments", "search", "auth", "ingest", "batch", "web", "ml", "kube-system", "default")
_NS_PER_S = 1_000_000_000
_GIB = 1024**3
_MIB = 1024**2


@dataclass(slots=True)
class _Container:
    container_id: str
    name: str
    started_at_ns: int
    cpu_millicores: float
    cpu_ns: int = 0
    periods: int = 0
    throttled: int = 0
    disk_read: int = 0
    disk_write: int = 0
    working_set: int = 0


@dataclass(slots=True)
class _Pod:
    namespace: str
    name: str
    workload: str
    uid: str
    labels: dict[str, str]
    containers: list[_Container]
    rx_bytes_per_s: float
    rx: int = 0
    tx: int = 0
    rx_packets: int = 0
    tx_packets: int = 0


@dataclass(slots=True)
class _Node:
    name: str
    pods: list[_Pod]
    cpu_ns: int = 0
    rx: int = 0
    tx: int = 0
    scrapes: int = 0


class SyntheticCluster:
    """``nodes`` simulated nodes; ``scrape`` returns one batch per node for the next scrape."""

    def __init__(
        self,
        *,
        nodes: int,
        pods_per_node: int = 30,
        containers_per_pod: int = 2,
        interval_seconds: float = 10.0,
        seed: int = 9,
        node_prefix: str = "node",
    ) -> None:
        self.interval_seconds = interval_seconds
        self._random = random.Random(seed)
        started = 1_700_000_000 * _NS_PER_S
        self._nodes: list[_Node] = []
        for n in range(nodes):
            pods = []
            for p in range(pods_per_node):
                namespace = NAMESPACES[(n + p) % len(NAMESPACES)]
                workload = f"app-{p % 12}"
                name = f"{workload}-{n:05d}{p:02d}-x{p % 7}k2m"
                containers = [
                    _Container(
                        container_id=f"{n:05d}{p:03d}{c:02d}".ljust(64, "a"),
                        name=("app", "sidecar", "log", "proxy")[c % 4],
                        started_at_ns=started,
                        cpu_millicores=self._random.uniform(5, 400),
                        working_set=self._random.randint(20 * _MIB, 600 * _MIB),
                    )
                    for c in range(containers_per_pod)
                ]
                pods.append(
                    _Pod(
                        namespace=namespace,
                        name=name,
                        workload=workload,
                        uid=str(uuid.UUID(int=self._random.getrandbits(128))),
                        labels={"app": workload, "tier": "backend" if p % 3 else "frontend"},
                        containers=containers,
                        rx_bytes_per_s=self._random.uniform(1e3, 5e6),
                    )
                )
            self._nodes.append(_Node(name=f"{node_prefix}-{n:05d}", pods=pods))

    @property
    def container_count(self) -> int:
        """Containers in the whole cluster."""
        return sum(len(pod.containers) for node in self._nodes for pod in node.pods)

    @property
    def pod_count(self) -> int:
        """Pods in the whole cluster."""
        return sum(len(node.pods) for node in self._nodes)

    def first_pod(self) -> tuple[str, str]:
        """Namespace and name of the first node's first pod."""
        pod = self._nodes[0].pods[0]
        return pod.namespace, pod.name

    def scrape(self, *, scraped_at_ns: int) -> list[Batch]:
        """One batch per node, as the kubelet source builds them, for a scrape at ``scraped_at_ns``."""
        return [self._node_batch(node, scraped_at_ns) for node in self._nodes]

    def _node_batch(self, node: _Node, scraped_at_ns: int) -> Batch:
        interval = self.interval_seconds
        jitter = self._random.random
        node.scrapes += 1
        containers: list[ContainerSample] = []
        pods: list[PodSample] = []
        node_cpu_ns = 0
        for pod in node.pods:
            for container in pod.containers:
                busy_ns = int(container.cpu_millicores * (0.8 + 0.4 * jitter()) * interval * 1e6)
                container.cpu_ns += busy_ns
                node_cpu_ns += busy_ns
                container.periods += int(interval * 10)
                container.throttled += int(interval * 10 * 0.05 * jitter())
                container.disk_read += int(4096 * 100 * jitter())
                container.disk_write += int(4096 * 300 * jitter())
                container.working_set = max(
                    8 * _MIB, container.working_set + int((jitter() - 0.5) * 4 * _MIB)
                )
                containers.append(
                    ContainerSample(
                        container_id=container.container_id,
                        started_at_ns=container.started_at_ns,
                        timestamp_ns=scraped_at_ns + int(jitter() * 2e8),
                        namespace=pod.namespace,
                        pod=pod.name,
                        container=container.name,
                        workload=pod.workload,
                        workload_kind="Deployment",
                        cpu_usage_nanoseconds_total=container.cpu_ns,
                        cpu_user_nanoseconds_total=container.cpu_ns * 7 // 10,
                        cpu_system_nanoseconds_total=container.cpu_ns * 3 // 10,
                        cpu_periods_total=container.periods,
                        cpu_throttled_periods_total=container.throttled,
                        cpu_limit_millicores=1000,
                        cpu_request_millicores=250,
                        memory_usage_bytes=container.working_set + 40 * _MIB,
                        memory_working_set_bytes=container.working_set,
                        memory_rss_bytes=container.working_set * 9 // 10,
                        memory_cache_bytes=40 * _MIB,
                        memory_limit_bytes=_GIB,
                        memory_request_bytes=256 * _MIB,
                        disk_read_bytes_total=container.disk_read,
                        disk_write_bytes_total=container.disk_write,
                        process_count=3,
                        restart_count=0,
                        fs_usage_bytes=12 * _MIB,
                        fs_capacity_bytes=100 * _GIB,
                    )
                )
            rx = int(pod.rx_bytes_per_s * interval * (0.8 + 0.4 * jitter()))
            pod.rx += rx
            pod.tx += rx // 3
            pod.rx_packets += rx // 900
            pod.tx_packets += rx // 2700
            pods.append(
                PodSample(
                    namespace=pod.namespace,
                    pod=pod.name,
                    pod_id=pod.uid,
                    timestamp_ns=scraped_at_ns + int(jitter() * 2e8),
                    workload=pod.workload,
                    workload_kind="Deployment",
                    labels=pod.labels,
                    network=NetworkCounters(
                        rx_bytes_total=pod.rx,
                        tx_bytes_total=pod.tx,
                        rx_packets_total=pod.rx_packets,
                        tx_packets_total=pod.tx_packets,
                        rx_errors_total=0,
                        tx_errors_total=0,
                        rx_dropped_total=0,
                        tx_dropped_total=0,
                    ),
                )
            )
        node.cpu_ns += node_cpu_ns + int(interval * 2e8)
        node.rx += sum(int(p.rx_bytes_per_s * interval) for p in node.pods[:3])
        node.tx += node.rx // 4
        node_sample = NodeSample(
            timestamp_ns=scraped_at_ns,
            labels={"kubernetes.io/hostname": node.name, "topology.kubernetes.io/zone": "z1"},
            boot_time_ns=1_690_000_000 * _NS_PER_S,
            cpu_usage_nanoseconds_total=node.cpu_ns,
            cpu_capacity_millicores=32_000,
            cpu_allocatable_millicores=31_500,
            memory_usage_bytes=64 * _GIB,
            memory_working_set_bytes=48 * _GIB,
            memory_capacity_bytes=128 * _GIB,
            memory_allocatable_bytes=126 * _GIB,
            network=NetworkCounters(rx_bytes_total=node.rx, tx_bytes_total=node.tx),
            fs_usage_bytes=40 * _GIB,
            fs_capacity_bytes=200 * _GIB,
        )
        return Batch(
            batch_id=f"{node.name}-{node.scrapes}",
            node=node.name,
            source="kubelet",
            scraped_at_ns=scraped_at_ns,
            interval_seconds=interval,
            node_sample=node_sample,
            containers=containers,
            pods=pods,
        )

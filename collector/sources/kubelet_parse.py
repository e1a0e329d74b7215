"""Pure functions that turn the kubelet's payloads into one scrape of container, pod and node samples.

No I/O here: ``collector/sources/kubelet.py`` fetches the bytes, these functions parse them (once, into the
models of ``kubelet_models``) and map them onto the wire format. Tests drive them with recorded payloads.

Usage::

    scrape = parse_scrape(summary_bytes, pods_bytes, node="n1", scraped_at_ns=time.time_ns(),
                          node_payload=node_bytes)   # node_payload: optional Node or NodeList JSON
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from pydantic import ValidationError

from collector.sources import Scrape
from collector.sources.kubelet_models import (
    Container,
    ContainerStats,
    ContainerStatus,
    CPUStats,
    InterfaceStats,
    MemoryStats,
    NetworkStats,
    Node,
    NodeDocument,
    Pod,
    PodList,
    PodSpec,
    PodStats,
    ResourceList,
    Summary,
)
from collector.wire import ContainerSample, NetworkCounters, NodeSample, PodSample

log = logging.getLogger(__name__)

_INT64_MAX = 2**63 - 1
MAX_LABELS = 256
"""The wire's cap on labels per pod or node."""
_CRONJOB_JOB_NAME = re.compile(r"(?P<cronjob>.+)-(?P<minutes>\d+)")
_CRONJOB_WINDOW_NS = 7 * 24 * 3600 * 1_000_000_000
"""How long after its scheduled minute a CronJob's Job may still create pods (retries, late starts)."""

_PHYSICAL_INTERFACE = re.compile(r"(?:eth\d+|en[opsxPv][0-9a-z_]*|em\d+|p\d+p\d+|wl[a-z0-9_]+|bond\d+|ib\d+)")
"""Names the kernel, udev or biosdevname give to real NICs (and bonds); VLAN subinterfaces such as
``eth0.100`` do not match, so their traffic is not counted twice."""


class NodeMismatchError(ValueError):
    """The kubelet describes a different node than the one this collector is configured for."""


# --- quantities and requests/limits ------------------------------------------------------------------------


def cpu_millicores(cores: Decimal | None) -> int | None:
    """CPU in millicores from a quantity in cores, rounded up as Kubernetes does; ``None`` if absent."""
    return _whole_up(cores * 1000) if cores is not None else None


def memory_bytes(amount: Decimal | None) -> int | None:
    """Memory in bytes from a quantity in bytes, rounded up as Kubernetes does; ``None`` if absent."""
    return _whole_up(amount) if amount is not None else None


def _whole_up(value: Decimal) -> int | None:
    # Requests are never negative (the API server refuses them) and nothing real exceeds int64: such a value
    # is dropped rather than allowed to fail the whole sample's validation.
    if value < 0 or value > _INT64_MAX:
        return None
    return math.ceil(value)


@dataclass(frozen=True, slots=True)
class Resources:
    """CPU (millicores) and memory (bytes) requests and limits; ``None`` where nothing declared one."""

    cpu_request_millicores: int | None = None
    cpu_limit_millicores: int | None = None
    memory_request_bytes: int | None = None
    memory_limit_bytes: int | None = None


def container_resources(container: Container | None) -> Resources:
    """One container's declared CPU (millicores) and memory (bytes) requests and limits."""
    if container is None or container.resources is None:
        return Resources()
    requests, limits = container.resources.requests, container.resources.limits
    return Resources(
        cpu_request_millicores=cpu_millicores(requests.get("cpu")),
        cpu_limit_millicores=cpu_millicores(limits.get("cpu")),
        memory_request_bytes=memory_bytes(requests.get("memory")),
        memory_limit_bytes=memory_bytes(limits.get("memory")),
    )


def effective_pod_amount(
    app: Iterable[Decimal | None], init: Iterable[tuple[Decimal | None, bool]]
) -> Decimal | None:
    """A pod's total of one resource (any unit) by Kubernetes' rule; ``None`` when no container declares it.

    ``app`` holds each app container's amount; ``init`` each init container's ``(amount, restartable)`` in
    declaration order, ``restartable`` meaning ``restartPolicy: Always`` (a sidecar). The total is the larger
    of (app containers + sidecars) and, for every init container, what runs while it runs: itself plus the
    sidecars declared before it (a sidecar's own moment counts it with the sidecars before it). A container
    that declares nothing counts as zero, as in Kubernetes' scheduler; a limit so summed covers only the
    containers that declare one.
    """
    declared = False
    running_total = Decimal(0)
    for amount in app:
        if amount is not None:
            declared = True
            running_total += amount
    sidecars = Decimal(0)
    init_peak = Decimal(0)
    for amount, restartable in init:
        if amount is not None:
            declared = True
        own = amount if amount is not None else Decimal(0)
        if restartable:
            sidecars += own
            running_total += own
            moment = sidecars
        else:
            moment = sidecars + own
        init_peak = max(init_peak, moment)
    return max(running_total, init_peak) if declared else None


def _pod_amount(
    spec: PodSpec, field: str, resource: str, *, pod_level: ResourceList, overhead_only_if_set: bool
) -> Decimal | None:
    def amount(container: Container) -> Decimal | None:
        if container.resources is None:
            return None
        return getattr(container.resources, field).get(resource)  # type: ignore[no-any-return]

    total = pod_level.get(resource)
    if total is None:
        total = effective_pod_amount(
            (amount(c) for c in spec.containers),
            ((amount(c), c.restart_policy == "Always") for c in spec.init_containers),
        )
    overhead = spec.overhead.get(resource)
    if overhead is None:
        return total
    # As in Kubernetes: the sandbox overhead always adds to the request, but only to a limit that exists.
    if total is None:
        return None if overhead_only_if_set else overhead
    return total + overhead


def pod_resources(spec: PodSpec) -> Resources:
    """A pod's CPU (millicores) and memory (bytes) totals as Kubernetes reckons them.

    Pod-level ``spec.resources`` win when set (Kubernetes 1.32+); otherwise ``effective_pod_amount`` over the
    containers; then the RuntimeClass overhead is added.
    """
    pod_requests = spec.resources.requests if spec.resources is not None else {}
    pod_limits = spec.resources.limits if spec.resources is not None else {}

    def total(field: str, resource: str) -> Decimal | None:
        pod_level = pod_requests if field == "requests" else pod_limits
        return _pod_amount(spec, field, resource, pod_level=pod_level, overhead_only_if_set=field == "limits")

    return Resources(
        cpu_request_millicores=cpu_millicores(total("requests", "cpu")),
        cpu_limit_millicores=cpu_millicores(total("limits", "cpu")),
        memory_request_bytes=memory_bytes(total("requests", "memory")),
        memory_limit_bytes=memory_bytes(total("limits", "memory")),
    )


# --- workloads ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workload:
    """What runs a pod: ``kind`` is Deployment, ReplicaSet, DaemonSet, StatefulSet, Job, CronJob, Pod, or the
    owner's own kind (custom controllers)."""

    name: str
    kind: str


def workload_of(pod: Pod) -> Workload:
    """The workload that owns ``pod``, resolved through ReplicaSets and CronJob Jobs where that is certain."""
    meta = pod.metadata
    owners = meta.owner_references
    owner = next((ref for ref in owners if ref.controller), owners[0] if owners else None)
    # Bare pods, and static pods (file-sourced on the kubelet, owned by their Node in the API), are their
    # own workload.
    if owner is None or owner.kind == "Node":
        return Workload(meta.name, "Pod")
    if owner.kind == "ReplicaSet":
        # A Deployment names its ReplicaSets "<deployment>-<pod-template-hash>" and stamps that hash on the
        # pods; a ReplicaSet whose name does not end in the pod's hash is not a Deployment's.
        template_hash = meta.labels.get("pod-template-hash")
        suffix = f"-{template_hash}"
        if template_hash and owner.name.endswith(suffix) and len(owner.name) > len(suffix):
            return Workload(owner.name.removesuffix(suffix), "Deployment")
        return Workload(owner.name, "ReplicaSet")
    if owner.kind == "Job":
        cronjob = _cronjob_of_job(owner.name, meta.creation_timestamp)
        return Workload(cronjob, "CronJob") if cronjob else Workload(owner.name, "Job")
    return Workload(owner.name, owner.kind)


def _cronjob_of_job(job_name: str, pod_created_ns: int | None) -> str | None:
    # A CronJob names each Job "<cronjob>-<scheduled time in minutes since the epoch>". The pod only names
    # its Job, so accept the CronJob reading only when that number is a minute shortly before the pod was
    # created: a hand-named Job ("backup-2024", "load-123") fails that test.
    match = _CRONJOB_JOB_NAME.fullmatch(job_name)
    if match is None or pod_created_ns is None:
        return None
    scheduled_ns = int(match["minutes"]) * 60 * 1_000_000_000
    if 0 <= pod_created_ns - scheduled_ns <= _CRONJOB_WINDOW_NS:
        return match["cronjob"]
    return None


# --- network -----------------------------------------------------------------------------------------------


def sum_interfaces(interfaces: Sequence[InterfaceStats]) -> NetworkCounters | None:
    """Counters (bytes, errors; cumulative) summed over ``interfaces``; one an interface lacks is ``None``."""

    def total(values: list[int | None]) -> int | None:
        # A partial sum would drop when the missing interface reappears and fake a counter reset.
        if not values or any(value is None for value in values):
            return None
        present = [value for value in values if value is not None]
        return sum(present) if sum(present) <= _INT64_MAX else None

    counters = NetworkCounters(
        rx_bytes_total=total([i.rx_bytes for i in interfaces]),
        tx_bytes_total=total([i.tx_bytes for i in interfaces]),
        rx_errors_total=total([i.rx_errors for i in interfaces]),
        tx_errors_total=total([i.tx_errors for i in interfaces]),
    )
    return None if counters == NetworkCounters() else counters


def pod_network(network: NetworkStats | None) -> NetworkCounters | None:
    """A pod's network namespace: all its interfaces summed, else the kubelet's single default interface."""
    if network is None:
        return None
    if network.interfaces:
        return sum_interfaces(network.interfaces)
    return sum_interfaces([network])


def is_physical_interface(name: str | None) -> bool:
    """Whether ``name`` looks like a real NIC or bond rather than a pod veth, bridge or tunnel."""
    return name is not None and _PHYSICAL_INTERFACE.fullmatch(name) is not None


def node_network(network: NetworkStats | None) -> NetworkCounters | None:
    """The node's traffic: its physical interfaces summed, else the kubelet's default interface.

    The node's namespace also holds the host side of every pod's veth and the overlay tunnels; counting those
    would count pod traffic two or three times over.
    """
    if network is None:
        return None
    physical = [i for i in network.interfaces or () if is_physical_interface(i.name)]
    if physical:
        return sum_interfaces(physical)
    return sum_interfaces([network])


# --- payloads ----------------------------------------------------------------------------------------------


def parse_summary(payload: bytes, *, node: str) -> Summary:
    """``/stats/summary`` as a typed model; raises ``ValueError`` for a bad payload and
    ``NodeMismatchError`` when it describes another node than ``node``."""
    summary = Summary.model_validate_json(payload)
    reported = summary.node.node_name
    if reported and reported != node:
        raise NodeMismatchError(f"the kubelet reports node {reported!r}, not {node!r}")
    return summary


def parse_pods(payload: bytes) -> PodList:
    """The kubelet's ``/pods`` (a PodList) as a typed model; raises ``ValueError`` for a bad payload."""
    return PodList.model_validate_json(payload)


def parse_node(payload: bytes, *, node: str) -> Node | None:
    """The Node called ``node`` from a Node or NodeList JSON document, ``None`` if it is not in it."""
    return NodeDocument.model_validate_json(payload).node_named(node)


def parse_scrape(
    summary_payload: bytes,
    pods_payload: bytes,
    *,
    node: str,
    scraped_at_ns: int,
    node_payload: bytes | None = None,
) -> Scrape:
    """The kubelet's two payloads (and optionally the Node object) as one scrape; see ``build_scrape``."""
    node_object = parse_node(node_payload, node=node) if node_payload is not None else None
    return build_scrape(
        parse_summary(summary_payload, node=node),
        parse_pods(pods_payload),
        node_object=node_object,
        scraped_at_ns=scraped_at_ns,
    )


def build_scrape(
    summary: Summary, pods: PodList, *, scraped_at_ns: int, node_object: Node | None = None
) -> Scrape:
    """Container samples for running containers, a pod sample per pod that has one, and the node sample.

    ``scraped_at_ns`` (nanoseconds) stands in for a reading's own time only where the kubelet gives none.
    Pods the summary lists but ``/pods`` does not (created between the two requests) are left for the next
    scrape: without their status there is no container id to key a series on.
    """
    by_uid = {pod.metadata.uid: pod for pod in pods.items if pod.metadata.uid}
    containers: list[ContainerSample] = []
    pod_samples: list[PodSample] = []
    for pod_stats in summary.pods:
        pod = by_uid.get(pod_stats.pod_ref.uid)
        if pod is None:
            log.debug("pod %s not yet in /pods; skipped", pod_stats.pod_ref.uid)
            continue
        workload = workload_of(pod)
        own = _container_samples(pod_stats, pod, workload, scraped_at_ns)
        if not own:
            continue
        containers.extend(own)
        pod_sample = _pod_sample(pod_stats, pod, workload, scraped_at_ns)
        if pod_sample is not None:
            pod_samples.append(pod_sample)
    return Scrape(
        containers=containers,
        pods=pod_samples,
        node=_node_sample(summary, node_object, scraped_at_ns),
    )


def runtime_container_id(container_id: str | None) -> str | None:
    """The runtime's own id from a status ``containerID`` (``containerd://abc`` is ``abc``, as in Docker)."""
    if not container_id:
        return None
    return container_id.partition("://")[2] or container_id


def _latest_per_name(stats: Sequence[ContainerStats]) -> list[ContainerStats]:
    # Right after a restart the kubelet can list a container twice (the dead and the new incarnation);
    # the later start is the one the status describes.
    latest: dict[str, ContainerStats] = {}
    for entry in stats:
        kept = latest.get(entry.name)
        if kept is None or (entry.start_time or 0) > (kept.start_time or 0):
            latest[entry.name] = entry
    return list(latest.values())


def _container_samples(
    pod_stats: PodStats, pod: Pod, workload: Workload, scraped_at_ns: int
) -> list[ContainerSample]:
    statuses: dict[str, ContainerStatus] = {
        status.name: status
        for status in (
            *pod.status.init_container_statuses,
            *pod.status.container_statuses,
            *pod.status.ephemeral_container_statuses,
        )
    }
    specs = {container.name: container for container in (*pod.spec.init_containers, *pod.spec.containers)}
    ref = pod_stats.pod_ref
    samples = []
    for stats in _latest_per_name(pod_stats.containers):
        status = statuses.get(stats.name)
        running = status.state.running if status is not None and status.state is not None else None
        container_id = runtime_container_id(status.container_id) if status is not None else None
        if status is None or running is None or container_id is None:
            # Completed init containers, finished Jobs and containers not yet started: nothing runs.
            continue
        resources = container_resources(specs.get(stats.name))
        cpu, memory = stats.cpu, stats.memory
        fs_usage, fs_capacity = _container_fs(stats)
        try:
            samples.append(
                ContainerSample(
                    container_id=container_id,
                    started_at_ns=stats.start_time if stats.start_time is not None else running.started_at,
                    timestamp_ns=_first(_time(cpu), _time(memory), scraped_at_ns),
                    namespace=ref.namespace,
                    pod=ref.name,
                    container=stats.name,
                    workload=workload.name,
                    workload_kind=workload.kind,
                    cpu_usage_nanoseconds_total=cpu.usage_core_nano_seconds if cpu else None,
                    cpu_request_millicores=resources.cpu_request_millicores,
                    cpu_limit_millicores=resources.cpu_limit_millicores,
                    memory_usage_bytes=memory.usage_bytes if memory else None,
                    memory_working_set_bytes=memory.working_set_bytes if memory else None,
                    memory_rss_bytes=memory.rss_bytes if memory else None,
                    memory_request_bytes=resources.memory_request_bytes,
                    memory_limit_bytes=resources.memory_limit_bytes,
                    restart_count=status.restart_count,
                    fs_usage_bytes=fs_usage,
                    fs_capacity_bytes=fs_capacity,
                )
            )
        except ValidationError as exc:
            log.warning("container %s/%s/%s skipped: %s", ref.namespace, ref.name, stats.name, exc)
    return samples


def _container_fs(stats: ContainerStats) -> tuple[int | None, int | None]:
    # What the container writes outside volumes: its writable layer plus its logs, the two parts the kubelet
    # charges to ephemeral-storage per container. Capacity is the writable layer's filesystem.
    filesystems = [fs for fs in (stats.rootfs, stats.logs) if fs is not None]
    parts = [fs.used_bytes for fs in filesystems if fs.used_bytes is not None]
    usage = sum(parts) if parts else None
    capacity = next((fs.capacity_bytes for fs in filesystems if fs.capacity_bytes is not None), None)
    return usage, capacity


def _pod_sample(pod_stats: PodStats, pod: Pod, workload: Workload, scraped_at_ns: int) -> PodSample | None:
    ref = pod_stats.pod_ref
    # A host-network pod's "network" block is the node's own namespace: charging it to the pod would count
    # the node's traffic once more for every such pod.
    network = None if pod.spec.host_network else pod_network(pod_stats.network)
    resources = pod_resources(pod.spec)
    try:
        return PodSample(
            namespace=ref.namespace,
            pod=ref.name,
            pod_id=ref.uid,
            timestamp_ns=_first(_time(pod_stats.network), scraped_at_ns),
            workload=workload.name,
            workload_kind=workload.kind,
            labels=wire_labels(pod.metadata.labels),
            network=network,
            cpu_request_millicores=resources.cpu_request_millicores,
            cpu_limit_millicores=resources.cpu_limit_millicores,
            memory_request_bytes=resources.memory_request_bytes,
            memory_limit_bytes=resources.memory_limit_bytes,
        )
    except ValidationError as exc:
        log.warning("pod %s/%s skipped: %s", ref.namespace, ref.name, exc)
        return None


def _node_sample(summary: Summary, node_object: Node | None, scraped_at_ns: int) -> NodeSample | None:
    stats = summary.node
    cpu, memory, fs = stats.cpu, stats.memory, stats.fs
    capacity = node_object.status.capacity if node_object is not None else {}
    allocatable = node_object.status.allocatable if node_object is not None else {}
    try:
        return NodeSample(
            timestamp_ns=_first(_time(cpu), _time(memory), scraped_at_ns),
            labels=wire_labels(node_object.metadata.labels) if node_object is not None else None,
            boot_time_ns=stats.start_time,
            cpu_usage_nanoseconds_total=cpu.usage_core_nano_seconds if cpu else None,
            cpu_capacity_millicores=cpu_millicores(capacity.get("cpu")),
            cpu_allocatable_millicores=cpu_millicores(allocatable.get("cpu")),
            memory_usage_bytes=memory.usage_bytes if memory else None,
            memory_working_set_bytes=memory.working_set_bytes if memory else None,
            memory_capacity_bytes=memory_bytes(capacity.get("memory")),
            memory_allocatable_bytes=memory_bytes(allocatable.get("memory")),
            network=node_network(stats.network),
            fs_usage_bytes=fs.used_bytes if fs else None,
            fs_capacity_bytes=fs.capacity_bytes if fs else None,
        )
    except ValidationError as exc:
        log.warning("node sample skipped: %s", exc)
        return None


def wire_labels(labels: dict[str, str]) -> dict[str, str] | None:
    """Labels as the wire carries them: ``None`` when there are none, else at most ``MAX_LABELS``."""
    if not labels:
        return None
    if len(labels) > MAX_LABELS:
        # The wire caps the count; an oversized set loses its last keys rather than the whole sample.
        log.debug("%d labels, only the first %d by key are shipped", len(labels), MAX_LABELS)
        return dict(sorted(labels.items())[:MAX_LABELS])
    return dict(labels)


def _time(reading: CPUStats | MemoryStats | NetworkStats | None) -> int | None:
    return reading.time if reading is not None else None


def _first(*values: int | None) -> int:
    # The last candidate is always the scrape time, so there is always a value.
    return next(value for value in values if value is not None)

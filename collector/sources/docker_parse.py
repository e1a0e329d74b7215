"""Pure parsing of Docker Engine API payloads (container list, inspect, one-shot stats, events) into samples.

Nothing here does I/O: ``collector.sources.docker`` fetches the JSON and tests drive these functions with
recorded payloads. Payloads are validated once into the typed models below; the mapping functions read
only those models.

Usage::

    entry = ContainerListEntry.model_validate(client.containers()[0])
    inspect = ContainerInspect.model_validate(client.inspect_container(entry.id))
    stats = ContainerStats.model_validate(client.stats(entry.id, stream=False, one_shot=True))
    samples = build_samples(entry, inspect, stats, default_namespace="default", host_memory_bytes=mem)
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from collector.wire import ContainerSample, NetworkCounters, PodSample

LABEL_POD_NAMESPACE = "io.kubernetes.pod.namespace"
LABEL_POD_NAME = "io.kubernetes.pod.name"
LABEL_POD_UID = "io.kubernetes.pod.uid"
LABEL_CONTAINER_NAME = "io.kubernetes.container.name"
LABEL_DOCKER_TYPE = "io.kubernetes.docker.type"
LABEL_COMPOSE_PROJECT = "com.docker.compose.project"

KUBELET_LABEL_PREFIXES = ("io.kubernetes.", "annotation.")
"""Keys the kubelet's docker shim adds to a sandbox's labels next to the pod's own (and its annotations)."""
MAX_POD_LABELS = 256
"""The wire's bound on labels per pod."""

SANDBOX_DOCKER_TYPE = "podsandbox"
SANDBOX_CONTAINER_NAME = "POD"

UNLIMITED_MEMORY_FLOOR_BYTES = 2**62
"""cgroup v1 reports "no limit" as 9223372036854771712 (page-rounded 2**63 - 1); anything this big is none."""

DEFAULT_CFS_PERIOD_US = 100_000
"""The CFS period the engine applies when only ``CpuQuota`` is set."""

_NS_PER_SECOND = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<frac>\d{1,9}))?"
    r"(?P<zone>[Zz]|[+-]\d{2}:\d{2})"
)


def parse_rfc3339_ns(text: str) -> int:
    """Nanoseconds since the Unix epoch of an RFC 3339 timestamp, exact to the ns (negative before 1970)."""
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    # datetime keeps only microseconds, so it handles the whole seconds (and validates the calendar) and the
    # fraction is added as an integer of nanoseconds.
    whole = datetime.fromisoformat(f"{match['date']}T{match['time']}+00:00")
    seconds = (whole - _EPOCH) // timedelta(seconds=1)
    zone = match["zone"]
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    fraction_ns = int((match["frac"] or "").ljust(9, "0"))
    return seconds * _NS_PER_SECOND + fraction_ns


def _epoch_ns_or_none(text: str | None) -> int | None:
    """Nanoseconds since the epoch, or ``None`` for Go's zero time ("0001-01-01T00:00:00Z" means unset)."""
    if text is None:
        return None
    value = parse_rfc3339_ns(text)
    return value if value > 0 else None


# --- payload models ---------------------------------------------------------------------------------------


class _Payload(BaseModel):
    # The engine adds keys between API versions; only what is read here is declared.
    model_config = ConfigDict(extra="ignore", frozen=True)


class CpuUsage(_Payload):
    """``cpu_stats.cpu_usage``: cumulative CPU time in nanoseconds."""

    total_usage: int | None = None
    usage_in_usermode: int | None = None
    usage_in_kernelmode: int | None = None


class ThrottlingData(_Payload):
    """``cpu_stats.throttling_data``: CFS periods (count) and throttled time (ns), cumulative."""

    periods: int | None = None
    throttled_periods: int | None = None
    throttled_time: int | None = None


class CpuStats(_Payload):
    """``cpu_stats`` of a stats payload."""

    cpu_usage: CpuUsage | None = None
    throttling_data: ThrottlingData | None = None


class MemoryStatDetails(_Payload):
    """``memory_stats.stats`` in bytes; cgroup v1 has hierarchical ``total_*`` keys, cgroup v2 does not."""

    total_inactive_file: int | None = None
    total_rss: int | None = None
    total_cache: int | None = None
    inactive_file: int | None = None
    anon: int | None = None
    file: int | None = None

    @property
    def is_cgroup_v1(self) -> bool:
        """Whether the payload came from a cgroup v1 host (it carries the hierarchical totals)."""
        return any(v is not None for v in (self.total_inactive_file, self.total_rss, self.total_cache))


class MemoryStats(_Payload):
    """``memory_stats`` in bytes; ``limit`` is the host's RAM when the container is unlimited."""

    usage: int | None = None
    limit: int | None = None
    stats: MemoryStatDetails | None = None


class InterfaceStats(_Payload):
    """One entry of ``networks``: cumulative counters of one interface."""

    rx_bytes: int | None = None
    tx_bytes: int | None = None
    rx_packets: int | None = None
    tx_packets: int | None = None
    rx_errors: int | None = None
    tx_errors: int | None = None
    rx_dropped: int | None = None
    tx_dropped: int | None = None


class BlkioEntry(_Payload):
    """One device/operation row of ``blkio_stats.io_service_bytes_recursive`` (bytes, cumulative)."""

    major: int | None = None
    minor: int | None = None
    op: str
    value: int


class BlkioStats(_Payload):
    """``blkio_stats``; the engine sends ``null`` or ``[]`` when nothing is accounted."""

    io_service_bytes_recursive: list[BlkioEntry] | None = None


class PidsStats(_Payload):
    """``pids_stats``: number of processes and threads in the container."""

    current: int | None = None


class ContainerStats(_Payload):
    """A ``/containers/{id}/stats?stream=false&one-shot=true`` response."""

    read: str
    id: str | None = None
    name: str | None = None
    cpu_stats: CpuStats | None = None
    memory_stats: MemoryStats | None = None
    networks: dict[str, InterfaceStats] | None = None
    blkio_stats: BlkioStats | None = None
    pids_stats: PidsStats | None = None


class InspectState(_Payload):
    """``State`` of an inspect response."""

    running: bool | None = Field(default=None, alias="Running")
    started_at: str | None = Field(default=None, alias="StartedAt")


class InspectHostConfig(_Payload):
    """``HostConfig`` of an inspect response: the limits the container was created with."""

    memory: int | None = Field(default=None, alias="Memory")
    nano_cpus: int | None = Field(default=None, alias="NanoCpus")
    cpu_quota: int | None = Field(default=None, alias="CpuQuota")
    cpu_period: int | None = Field(default=None, alias="CpuPeriod")
    network_mode: str | None = Field(default=None, alias="NetworkMode")


class InspectConfig(_Payload):
    """``Config`` of an inspect response."""

    labels: dict[str, str] | None = Field(default=None, alias="Labels")


class ContainerInspect(_Payload):
    """A ``/containers/{id}/json`` response."""

    id: str = Field(alias="Id")
    name: str | None = Field(default=None, alias="Name")
    restart_count: int | None = Field(default=None, alias="RestartCount")
    state: InspectState | None = Field(default=None, alias="State")
    host_config: InspectHostConfig | None = Field(default=None, alias="HostConfig")
    config: InspectConfig | None = Field(default=None, alias="Config")


class ContainerListEntry(_Payload):
    """One element of a ``/containers/json`` response."""

    id: str = Field(alias="Id")
    names: list[str] = Field(default_factory=list, alias="Names")
    labels: dict[str, str] | None = Field(default=None, alias="Labels")
    state: str | None = Field(default=None, alias="State")


class EventActor(_Payload):
    """``Actor`` of an event: the object it is about."""

    id: str | None = Field(default=None, alias="ID")


class ContainerEvent(_Payload):
    """One ``/events`` message about a container (``start``, ``update``...)."""

    action: str | None = Field(default=None, alias="Action")
    actor: EventActor | None = Field(default=None, alias="Actor")
    legacy_id: str | None = Field(default=None, alias="id")
    """The pre-1.22 ``id`` key, still sent next to ``Actor``."""

    @property
    def container_id(self) -> str | None:
        """The id of the container the event is about, ``None`` when the message names none."""
        if self.actor is not None and self.actor.id:
            return self.actor.id
        return self.legacy_id or None


class EngineInfo(_Payload):
    """The part of ``/info`` the source needs: the engine host's RAM in bytes."""

    mem_total: int | None = Field(default=None, alias="MemTotal")


# --- identity ---------------------------------------------------------------------------------------------


class Role(enum.StrEnum):
    """What a Docker container is to kpulse."""

    SANDBOX = "sandbox"
    """A kubelet pod sandbox ("pause"): holds the pod's network namespace, not one of its containers."""
    POD_CONTAINER = "pod_container"
    """A container a kubelet started in a pod; it shares the sandbox's network namespace."""
    PLAIN = "plain"
    """A container started by hand or by compose: its own pod, with its own network."""


@dataclass(frozen=True, slots=True)
class ContainerIdentity:
    """Who a container is: its runtime id, where it belongs (namespace/pod/container) and its role."""

    container_id: str
    namespace: str
    pod: str
    container: str
    role: Role
    pod_uid: str | None = None
    labels: Mapping[str, str] | None = field(default=None, hash=False)
    """The container's docker labels."""


def container_name(entry: ContainerListEntry, inspect: ContainerInspect | None = None) -> str:
    """The container's own name without the leading "/" (falls back to the short id)."""
    # Legacy links add names like "/other/alias" to the list entry; the own name has no inner "/".
    for name in entry.names:
        bare = name.removeprefix("/")
        if bare and "/" not in bare:
            return bare
    if inspect is not None and inspect.name:
        return inspect.name.removeprefix("/")
    return entry.id[:12]


def parse_identity(
    entry: ContainerListEntry, inspect: ContainerInspect | None, *, default_namespace: str
) -> ContainerIdentity:
    """Where a container belongs, from the kubelet's docker labels or the compose project label."""
    labels = entry.labels
    if labels is None and inspect is not None and inspect.config is not None:
        labels = inspect.config.labels
    labels = labels or {}
    name = container_name(entry, inspect)
    namespace = labels.get(LABEL_POD_NAMESPACE)
    pod = labels.get(LABEL_POD_NAME)
    if namespace and pod:
        k8s_container = labels.get(LABEL_CONTAINER_NAME) or name
        # Older kubelets mark the sandbox only by its container name "POD", newer ones also by the type label.
        is_sandbox = (
            labels.get(LABEL_DOCKER_TYPE) == SANDBOX_DOCKER_TYPE or k8s_container == SANDBOX_CONTAINER_NAME
        )
        return ContainerIdentity(
            container_id=entry.id,
            namespace=namespace,
            pod=pod,
            container=k8s_container,
            role=Role.SANDBOX if is_sandbox else Role.POD_CONTAINER,
            pod_uid=labels.get(LABEL_POD_UID),
            labels=labels,
        )
    return ContainerIdentity(
        container_id=entry.id,
        namespace=labels.get(LABEL_COMPOSE_PROJECT) or default_namespace,
        pod=name,
        container=name,
        role=Role.PLAIN,
        labels=labels,
    )


def pod_labels(identity: ContainerIdentity) -> dict[str, str] | None:
    """The labels a pod sample carries for label selectors; ``None`` when there are none."""
    labels = identity.labels or {}
    if identity.role is Role.SANDBOX:
        # The shim copies the pod's labels onto its sandbox, next to its own bookkeeping keys.
        labels = {k: v for k, v in labels.items() if not k.startswith(KUBELET_LABEL_PREFIXES)}
    elif identity.role is Role.POD_CONTAINER:
        return None  # the pod's labels live on its sandbox
    if not labels:
        return None
    return {key: labels[key] for key in sorted(labels)[:MAX_POD_LABELS]}


# --- limits -----------------------------------------------------------------------------------------------


def cpu_limit_millicores(host_config: InspectHostConfig | None) -> int | None:
    """CPU limit in millicores from ``NanoCpus`` or ``CpuQuota``/``CpuPeriod``; ``None`` when unlimited."""
    if host_config is None:
        return None
    if host_config.nano_cpus and host_config.nano_cpus > 0:
        return (host_config.nano_cpus + 500_000) // 1_000_000
    if host_config.cpu_quota and host_config.cpu_quota > 0:  # -1 also means unlimited
        configured = host_config.cpu_period
        period = configured if configured and configured > 0 else DEFAULT_CFS_PERIOD_US
        return (host_config.cpu_quota * 1000 + period // 2) // period
    return None


def memory_limit_bytes(
    configured_bytes: int | None, reported_bytes: int | None, *, host_memory_bytes: int | None
) -> int | None:
    """Memory limit in bytes, or ``None`` when unlimited (the engine then reports host RAM or ~2**63)."""
    if configured_bytes is not None and configured_bytes > 0:
        return configured_bytes
    # Without the host's RAM a reported limit cannot be told apart from "unlimited", so none is claimed.
    if reported_bytes is None or reported_bytes <= 0 or host_memory_bytes is None:
        return None
    if reported_bytes >= host_memory_bytes or reported_bytes >= UNLIMITED_MEMORY_FLOOR_BYTES:
        return None
    # A limit below the host's RAM with none configured comes from a parent cgroup (e.g. a pod-level limit).
    return reported_bytes


# --- stats ------------------------------------------------------------------------------------------------


def _sum_present(values: Iterable[int | None]) -> int | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def sum_networks(networks: Mapping[str, InterfaceStats] | None) -> NetworkCounters | None:
    """Cumulative counters summed over the interfaces (bytes, packets); ``None`` when none is reported."""
    if not networks:
        return None
    ifaces = list(networks.values())
    return NetworkCounters(
        rx_bytes_total=_sum_present(i.rx_bytes for i in ifaces),
        tx_bytes_total=_sum_present(i.tx_bytes for i in ifaces),
        rx_packets_total=_sum_present(i.rx_packets for i in ifaces),
        tx_packets_total=_sum_present(i.tx_packets for i in ifaces),
        rx_errors_total=_sum_present(i.rx_errors for i in ifaces),
        tx_errors_total=_sum_present(i.tx_errors for i in ifaces),
        rx_dropped_total=_sum_present(i.rx_dropped for i in ifaces),
        tx_dropped_total=_sum_present(i.tx_dropped for i in ifaces),
    )


def block_io_bytes(blkio: BlkioStats | None) -> tuple[int | None, int | None]:
    """(read, written) bytes summed over devices, cumulative; ``None`` when the engine accounted nothing."""
    entries = blkio.io_service_bytes_recursive if blkio is not None else None
    # An empty list is not "no I/O": on cgroup v1 with recent kernels blkio.throttle.* only counts for
    # cgroups that have a throttle rule, so a container that did real I/O still shows [] (seen on 6.18).
    if not entries:
        return None, None
    read = _sum_present(e.value if e.op.lower() == "read" else None for e in entries)
    write = _sum_present(e.value if e.op.lower() == "write" else None for e in entries)
    return read, write


@dataclass(frozen=True, slots=True)
class MemoryReading:
    """Memory of one container in bytes; ``None`` where the payload did not say."""

    usage_bytes: int | None
    working_set_bytes: int | None
    rss_bytes: int | None
    cache_bytes: int | None


def parse_memory(memory: MemoryStats | None) -> MemoryReading:
    """Usage, working set (usage minus inactive file, floored at 0), RSS and cache, in bytes."""
    if memory is None:
        return MemoryReading(None, None, None, None)
    details = memory.stats
    if details is None:
        inactive = rss = cache = None
    elif details.is_cgroup_v1:
        inactive, rss, cache = details.total_inactive_file, details.total_rss, details.total_cache
    else:
        inactive, rss, cache = details.inactive_file, details.anon, details.file
    working_set = None
    if memory.usage is not None and inactive is not None:
        # Inactive file pages are the first the kernel reclaims, so they are not part of what the container
        # needs; the subtraction can go negative when the two numbers are read at slightly different times.
        working_set = max(memory.usage - inactive, 0)
    return MemoryReading(memory.usage, working_set, rss, cache)


@dataclass(frozen=True, slots=True)
class StatsReading:
    """Everything one stats payload says about a container, in wire units (ns, bytes, counts)."""

    timestamp_ns: int
    cpu_usage_ns: int | None
    cpu_user_ns: int | None
    cpu_system_ns: int | None
    cpu_periods: int | None
    cpu_throttled_periods: int | None
    cpu_throttled_ns: int | None
    memory: MemoryReading
    memory_reported_limit_bytes: int | None
    network: NetworkCounters | None
    disk_read_bytes: int | None
    disk_write_bytes: int | None
    process_count: int | None


def parse_stats(stats: ContainerStats) -> StatsReading | None:
    """Counters of a one-shot stats payload (ns, bytes); ``None`` when the container is not running."""
    timestamp_ns = _epoch_ns_or_none(stats.read)
    if timestamp_ns is None:
        # The engine answers 200 with zeroed stats and a zero "read" for a container that has stopped.
        return None
    cpu = stats.cpu_stats or CpuStats()
    usage = cpu.cpu_usage or CpuUsage()
    throttling = cpu.throttling_data or ThrottlingData()
    disk_read, disk_write = block_io_bytes(stats.blkio_stats)
    return StatsReading(
        timestamp_ns=timestamp_ns,
        cpu_usage_ns=usage.total_usage,
        cpu_user_ns=usage.usage_in_usermode,
        cpu_system_ns=usage.usage_in_kernelmode,
        cpu_periods=throttling.periods,
        cpu_throttled_periods=throttling.throttled_periods,
        cpu_throttled_ns=throttling.throttled_time,
        memory=parse_memory(stats.memory_stats),
        memory_reported_limit_bytes=stats.memory_stats.limit if stats.memory_stats else None,
        network=sum_networks(stats.networks),
        disk_read_bytes=disk_read,
        disk_write_bytes=disk_write,
        process_count=stats.pids_stats.current if stats.pids_stats else None,
    )


# --- samples ----------------------------------------------------------------------------------------------


class Samples(NamedTuple):
    """What one Docker container contributes to a scrape: a container sample, a pod sample, or both."""

    container: ContainerSample | None
    pod: PodSample | None


def build_samples(
    entry: ContainerListEntry,
    inspect: ContainerInspect,
    stats: ContainerStats,
    *,
    default_namespace: str,
    host_memory_bytes: int | None,
) -> Samples | None:
    """The wire samples of one container (ns, bytes, millicores); ``None`` when it is no longer running."""
    reading = parse_stats(stats)
    if reading is None:
        return None
    return samples_from_reading(
        entry, inspect, reading, default_namespace=default_namespace, host_memory_bytes=host_memory_bytes
    )


def samples_from_reading(
    entry: ContainerListEntry,
    inspect: ContainerInspect,
    reading: StatsReading,
    *,
    default_namespace: str,
    host_memory_bytes: int | None,
) -> Samples:
    """The wire samples of a running container from its parsed stats (ns, bytes, millicores)."""
    identity = parse_identity(entry, inspect, default_namespace=default_namespace)

    if identity.role is Role.SANDBOX:
        # The sandbox only holds the pod's network namespace: its counters are the pod's network, and its
        # own few ms of CPU would only add a phantom "POD" container to every pod.
        sandbox_pod = PodSample(
            namespace=identity.namespace,
            pod=identity.pod,
            pod_id=identity.container_id,
            timestamp_ns=reading.timestamp_ns,
            labels=pod_labels(identity),
            network=reading.network,
        )
        return Samples(container=None, pod=sandbox_pod)

    host_config = inspect.host_config
    state = inspect.state
    # Pod containers share the sandbox's network namespace (the engine even repeats its counters for them);
    # reporting it again per container would count the pod's traffic several times.
    network = reading.network if identity.role is Role.PLAIN else None
    container = ContainerSample(
        container_id=identity.container_id,
        started_at_ns=_epoch_ns_or_none(state.started_at) if state is not None else None,
        timestamp_ns=reading.timestamp_ns,
        namespace=identity.namespace,
        pod=identity.pod,
        container=identity.container,
        cpu_usage_nanoseconds_total=reading.cpu_usage_ns,
        cpu_user_nanoseconds_total=reading.cpu_user_ns,
        cpu_system_nanoseconds_total=reading.cpu_system_ns,
        cpu_periods_total=reading.cpu_periods,
        cpu_throttled_periods_total=reading.cpu_throttled_periods,
        cpu_throttled_nanoseconds_total=reading.cpu_throttled_ns,
        cpu_limit_millicores=cpu_limit_millicores(host_config),
        memory_usage_bytes=reading.memory.usage_bytes,
        memory_working_set_bytes=reading.memory.working_set_bytes,
        memory_rss_bytes=reading.memory.rss_bytes,
        memory_cache_bytes=reading.memory.cache_bytes,
        memory_limit_bytes=memory_limit_bytes(
            host_config.memory if host_config is not None else None,
            reading.memory_reported_limit_bytes,
            host_memory_bytes=host_memory_bytes,
        ),
        network=network,
        disk_read_bytes_total=reading.disk_read_bytes,
        disk_write_bytes_total=reading.disk_write_bytes,
        process_count=reading.process_count,
        restart_count=inspect.restart_count,
    )
    pod: PodSample | None = None
    if identity.role is Role.PLAIN:
        # A plain container is its own pod; the pod sample carries its network so pods always have one.
        pod = PodSample(
            namespace=identity.namespace,
            pod=identity.pod,
            pod_id=identity.container_id,
            timestamp_ns=reading.timestamp_ns,
            labels=pod_labels(identity),
            network=reading.network,
        )
    return Samples(container=container, pod=pod)

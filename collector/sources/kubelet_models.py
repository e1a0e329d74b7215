"""Typed models of the kubelet's ``/stats/summary`` and ``/pods`` and of the API server's Node, parsed once.

Only the parts kpulse reads are modelled; everything else in the payloads is ignored. Almost every field is
optional because the kubelet omits what its runtime or version does not report (the Summary API's fields
are pointers), and an absent reading must stay ``None``, never become zero.

Usage::

    summary = Summary.model_validate_json(payload)
    summary.pods[0].containers[0].cpu.usage_core_nano_seconds   # int | None, nanoseconds of CPU time
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# --- values ----------------------------------------------------------------------------------------------

_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    # the exponent form is tried before the bare "E" (exa) suffix, so "1e3" is 1000 and "1E" is 10**18
    r"(?P<suffix>[eE][+-]?\d+|Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?",
    re.ASCII,
)
_SUFFIX_FACTOR: dict[str, Decimal] = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_MAX_EXPONENT = 30
"""Larger decimal exponents are refused: no real resource needs them, and they would build huge ints."""


def parse_quantity(text: str) -> Decimal:
    """The exact value of a Kubernetes quantity (``"100m"`` is 0.1, ``"128Mi"`` 134217728, ``"1e3"`` 1000).

    Raises ``ValueError`` for anything that is not a quantity, as the API server would refuse it.
    """
    match = _QUANTITY.fullmatch(text)
    if match is None:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    number, suffix = match["number"], match["suffix"] or ""
    try:
        value = Decimal(number)
    except InvalidOperation as exc:  # pragma: no cover - the pattern only admits valid decimals
        raise ValueError(f"not a Kubernetes quantity: {text!r}") from exc
    if suffix not in _SUFFIX_FACTOR:  # a decimal exponent, "e3" or "E-2"
        exponent = int(suffix[1:])
        if abs(exponent) > _MAX_EXPONENT:
            raise ValueError(f"quantity exponent out of range: {text!r}")
        return value.scaleb(exponent)
    return value * _SUFFIX_FACTOR[suffix]


def _quantity(value: object) -> Decimal:
    # Quantities always arrive as strings from the API; a bare JSON number is accepted like kubectl does.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return parse_quantity(value if isinstance(value, str) else str(value))


Quantity = Annotated[Decimal, BeforeValidator(_quantity)]
"""A Kubernetes resource quantity as its exact decimal value (cores for CPU, bytes for memory)."""

_RFC3339 = re.compile(r"(?P<seconds>[^.]+?)(?:\.(?P<fraction>\d+))?(?P<zone>Z|z|[+-]\d\d:\d\d)", re.ASCII)


def _rfc3339_ns(value: object) -> int:
    # Kubernetes writes seconds (metav1.Time) or microseconds (MicroTime); keep up to nanoseconds exactly
    # rather than going through datetime, which stops at microseconds.
    if not isinstance(value, str) or (match := _RFC3339.fullmatch(value)) is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    zone = "+00:00" if match["zone"] in ("Z", "z") else match["zone"]
    moment = datetime.fromisoformat(match["seconds"] + zone)
    if moment.tzinfo is None:  # pragma: no cover - the pattern requires a zone
        moment = moment.replace(tzinfo=UTC)
    whole_seconds = int(moment.timestamp())
    fraction = (match["fraction"] or "")[:9].ljust(9, "0")
    return whole_seconds * 1_000_000_000 + int(fraction)


TimestampNs = Annotated[int, BeforeValidator(_rfc3339_ns)]
"""An RFC 3339 timestamp as nanoseconds since the Unix epoch."""

ResourceList = dict[str, Quantity]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


# --- /stats/summary --------------------------------------------------------------------------------------


class CPUStats(_Model):
    time: TimestampNs | None = None
    usage_nano_cores: int | None = Field(default=None, alias="usageNanoCores")
    """CPU in use, averaged over the kubelet's own sampling window (nanocores)."""
    usage_core_nano_seconds: int | None = Field(default=None, alias="usageCoreNanoSeconds")
    """CPU time used since the container (or node) started (nanoseconds, cumulative)."""


class MemoryStats(_Model):
    time: TimestampNs | None = None
    available_bytes: int | None = Field(default=None, alias="availableBytes")
    usage_bytes: int | None = Field(default=None, alias="usageBytes")
    working_set_bytes: int | None = Field(default=None, alias="workingSetBytes")
    rss_bytes: int | None = Field(default=None, alias="rssBytes")
    page_faults: int | None = Field(default=None, alias="pageFaults")
    major_page_faults: int | None = Field(default=None, alias="majorPageFaults")


class FsStats(_Model):
    time: TimestampNs | None = None
    available_bytes: int | None = Field(default=None, alias="availableBytes")
    capacity_bytes: int | None = Field(default=None, alias="capacityBytes")
    used_bytes: int | None = Field(default=None, alias="usedBytes")
    inodes_free: int | None = Field(default=None, alias="inodesFree")
    inodes: int | None = None
    inodes_used: int | None = Field(default=None, alias="inodesUsed")


class InterfaceStats(_Model):
    name: str | None = None
    rx_bytes: int | None = Field(default=None, alias="rxBytes")
    rx_errors: int | None = Field(default=None, alias="rxErrors")
    tx_bytes: int | None = Field(default=None, alias="txBytes")
    tx_errors: int | None = Field(default=None, alias="txErrors")


class NetworkStats(InterfaceStats):
    """The default interface inline (``name``, ``rxBytes``...) and every interface in ``interfaces``."""

    time: TimestampNs | None = None
    interfaces: list[InterfaceStats] | None = None


class ContainerStats(_Model):
    name: str
    start_time: TimestampNs | None = Field(default=None, alias="startTime")
    cpu: CPUStats | None = None
    memory: MemoryStats | None = None
    rootfs: FsStats | None = None
    """The container's writable layer."""
    logs: FsStats | None = None
    """The container's log files."""


class PodReference(_Model):
    name: str
    namespace: str
    uid: str


class VolumeStats(FsStats):
    name: str | None = None


class ProcessStats(_Model):
    process_count: int | None = None


class PodStats(_Model):
    pod_ref: PodReference = Field(alias="podRef")
    start_time: TimestampNs | None = Field(default=None, alias="startTime")
    containers: list[ContainerStats] = []
    cpu: CPUStats | None = None
    memory: MemoryStats | None = None
    network: NetworkStats | None = None
    volume: list[VolumeStats] | None = None
    ephemeral_storage: FsStats | None = Field(default=None, alias="ephemeral-storage")
    process_stats: ProcessStats | None = None


class RuntimeStats(_Model):
    image_fs: FsStats | None = Field(default=None, alias="imageFs")
    container_fs: FsStats | None = Field(default=None, alias="containerFs")


class NodeStats(_Model):
    node_name: str | None = Field(default=None, alias="nodeName")
    start_time: TimestampNs | None = Field(default=None, alias="startTime")
    """When the node's root cgroup was created, i.e. when the machine booted."""
    cpu: CPUStats | None = None
    memory: MemoryStats | None = None
    network: NetworkStats | None = None
    fs: FsStats | None = None
    """The filesystem holding the kubelet's root directory (usually the node's root filesystem)."""
    runtime: RuntimeStats | None = None


class Summary(_Model):
    """``GET /stats/summary``."""

    node: NodeStats
    pods: list[PodStats] = []


# --- /pods (PodList) and the Node object -----------------------------------------------------------------


class OwnerReference(_Model):
    kind: str
    name: str
    controller: bool | None = None


class ObjectMeta(_Model):
    name: str
    namespace: str | None = None
    uid: str | None = None
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    owner_references: list[OwnerReference] = Field(default=[], alias="ownerReferences")
    creation_timestamp: TimestampNs | None = Field(default=None, alias="creationTimestamp")


class ResourceRequirements(_Model):
    requests: ResourceList = {}
    limits: ResourceList = {}


class Container(_Model):
    name: str
    resources: ResourceRequirements | None = None
    restart_policy: str | None = Field(default=None, alias="restartPolicy")
    """Only on init containers: ``Always`` makes it a sidecar that runs beside the app containers."""


class PodSpec(_Model):
    node_name: str | None = Field(default=None, alias="nodeName")
    containers: list[Container] = []
    init_containers: list[Container] = Field(default=[], alias="initContainers")
    host_network: bool = Field(default=False, alias="hostNetwork")
    overhead: ResourceList = {}
    """What the RuntimeClass adds for the sandbox itself (e.g. a VM for Kata); counted in the pod's total."""
    resources: ResourceRequirements | None = None
    """Pod-level requests and limits (Kubernetes 1.32+); when set they are the pod's totals."""


class ContainerStateRunning(_Model):
    started_at: TimestampNs | None = Field(default=None, alias="startedAt")


class ContainerState(_Model):
    running: ContainerStateRunning | None = None
    waiting: dict[str, object] | None = None
    terminated: dict[str, object] | None = None


class ContainerStatus(_Model):
    name: str
    container_id: str | None = Field(default=None, alias="containerID")
    """``<runtime>://<id>``; absent until the runtime has created the container."""
    restart_count: int | None = Field(default=None, alias="restartCount")
    state: ContainerState | None = None


class PodStatus(_Model):
    phase: str | None = None
    qos_class: str | None = Field(default=None, alias="qosClass")
    container_statuses: list[ContainerStatus] = Field(default=[], alias="containerStatuses")
    init_container_statuses: list[ContainerStatus] = Field(default=[], alias="initContainerStatuses")
    ephemeral_container_statuses: list[ContainerStatus] = Field(
        default=[], alias="ephemeralContainerStatuses"
    )
    """``kubectl debug`` containers: they run and use resources but may not declare any."""


class Pod(_Model):
    metadata: ObjectMeta
    spec: PodSpec = PodSpec()
    status: PodStatus = PodStatus()


class PodList(_Model):
    """``GET /pods`` on the kubelet: every pod the kubelet knows on its node, running or not."""

    items: list[Pod] = []


class NodeStatus(_Model):
    capacity: ResourceList = {}
    allocatable: ResourceList = {}


class Node(_Model):
    """One Node object from the API server; only capacity and allocatable are read."""

    metadata: ObjectMeta
    status: NodeStatus = NodeStatus()


class _DocumentMeta(_Model):
    name: str | None = None
    labels: dict[str, str] = {}


class NodeDocument(_Model):
    """What the API server answers for ``/api/v1/nodes/<name>`` (a Node) or ``/api/v1/nodes`` (a NodeList)."""

    metadata: _DocumentMeta = _DocumentMeta()
    """A Node's metadata, or a list's (which has no name)."""
    status: NodeStatus = NodeStatus()
    items: list[Node] | None = None

    def node_named(self, name: str) -> Node | None:
        """The Node called ``name`` in this document, or ``None``."""
        if self.items is not None:
            return next((node for node in self.items if node.metadata.name == name), None)
        if self.metadata.name == name:
            return Node(metadata=ObjectMeta(name=name, labels=self.metadata.labels), status=self.status)
        return None

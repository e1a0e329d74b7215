"""Response models of ``metrics.k8s.io/v1beta1`` and its discovery documents, as metrics-server serves them.

Field names are Kubernetes' own (``apiVersion``, ``creationTimestamp``); optional fields that Kubernetes
omits when empty (``namespace`` of a node, ``labels``, ``details``) are left out of the JSON.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

GROUP = "metrics.k8s.io"
VERSION = "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"

Quantity = Annotated[
    str,
    Field(
        description="A Kubernetes quantity in canonical form (CPU: 1500m; memory in bytes: 12345Ki).",
        examples=["1500m", "123456789n", "12345Ki"],
    ),
]
Time = Annotated[
    str,
    Field(
        json_schema_extra={"format": "date-time"},
        description="RFC 3339 in UTC, whole seconds.",
        examples=["2024-05-01T10:00:00Z"],
    ),
]


class _K8s(BaseModel):
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)


class ObjectMeta(_K8s):
    name: str
    namespace: str | None = None
    creation_timestamp: Time = Field(alias="creationTimestamp")
    labels: dict[str, str] | None = None


class ListMeta(_K8s):
    """Empty, as metrics-server's lists have it."""


class ResourceUsage(_K8s):
    cpu: Quantity
    memory: Quantity = Field(description="Working-set memory, bytes, canonical binary SI.")


class ContainerMetrics(_K8s):
    name: str
    usage: ResourceUsage


class NodeMetrics(_K8s):
    kind: Literal["NodeMetrics"] = "NodeMetrics"
    api_version: Literal["metrics.k8s.io/v1beta1"] = Field(
        default="metrics.k8s.io/v1beta1", alias="apiVersion"
    )
    metadata: ObjectMeta
    timestamp: Time = Field(description="End of the window the usage was measured over.")
    window: str = Field(description="Length of that window, a Go duration (the aggregator's resolution).")
    usage: ResourceUsage


class NodeMetricsList(_K8s):
    kind: Literal["NodeMetricsList"] = "NodeMetricsList"
    api_version: Literal["metrics.k8s.io/v1beta1"] = Field(
        default="metrics.k8s.io/v1beta1", alias="apiVersion"
    )
    metadata: ListMeta = Field(default_factory=ListMeta)
    items: list[NodeMetrics]


class PodMetrics(_K8s):
    kind: Literal["PodMetrics"] = "PodMetrics"
    api_version: Literal["metrics.k8s.io/v1beta1"] = Field(
        default="metrics.k8s.io/v1beta1", alias="apiVersion"
    )
    metadata: ObjectMeta
    timestamp: Time
    window: str
    containers: list[ContainerMetrics]


class PodMetricsList(_K8s):
    kind: Literal["PodMetricsList"] = "PodMetricsList"
    api_version: Literal["metrics.k8s.io/v1beta1"] = Field(
        default="metrics.k8s.io/v1beta1", alias="apiVersion"
    )
    metadata: ListMeta = Field(default_factory=ListMeta)
    items: list[PodMetrics]


class GroupVersionForDiscovery(_K8s):
    group_version: str = Field(alias="groupVersion")
    version: str


class APIGroup(_K8s):
    kind: Literal["APIGroup"] = "APIGroup"
    api_version: Literal["v1"] = Field(default="v1", alias="apiVersion")
    name: str
    versions: list[GroupVersionForDiscovery]
    preferred_version: GroupVersionForDiscovery = Field(alias="preferredVersion")


class APIGroupList(_K8s):
    kind: Literal["APIGroupList"] = "APIGroupList"
    api_version: Literal["v1"] = Field(default="v1", alias="apiVersion")
    groups: list[APIGroup]


class APIResource(_K8s):
    name: str
    singular_name: str = Field(alias="singularName")
    namespaced: bool
    kind: str
    verbs: list[str]


class APIResourceList(_K8s):
    kind: Literal["APIResourceList"] = "APIResourceList"
    api_version: Literal["v1"] = Field(default="v1", alias="apiVersion")
    group_version: str = Field(alias="groupVersion")
    resources: list[APIResource]


class StatusDetails(_K8s):
    name: str | None = None
    group: str | None = None
    kind: str | None = None


class Status(_K8s):
    """A failed request, as the Kubernetes API server reports it."""

    kind: Literal["Status"] = "Status"
    api_version: Literal["v1"] = Field(default="v1", alias="apiVersion")
    metadata: ListMeta = Field(default_factory=ListMeta)
    status: Literal["Failure"] = "Failure"
    message: str
    reason: str = Field(description="NotFound, BadRequest, Unauthorized, ServiceUnavailable, ...")
    details: StatusDetails | None = None
    code: int

"""The tags of one node's container and pod points: a dict per series, built once and shared by its points.

Building a tags dict for every sample cost a dict per point (allocated, filled, later freed: a few percent
of the ingest path, docs/performance.md). Nothing downstream changes a point's tags (the sinks serialise
them, the query window reads them), so successive points of a series can share one dict; a tag value that
changes (a pod's new workload label) makes a new dict, and the points already out keep the old one. The
query window also finds a series by its tags object instead of reading the tags again
(``RecentStore.add``). The strings are interned, as the window interns its series' names, so both hold one
copy of each name.

Usage::

    known = NodeTags(cluster="prod", node="n1")
    values = ("shop", "web-1", "app", "web", "Deployment")    # namespace, pod, container, workload, kind
    tags = known.containers.get(values) or known.add_container(values)
    assert known.containers[values] is tags                   # the next batch's point gets the same dict
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from aggregator.catalog import Tag
from collector.wire import ContainerSample

ContainerTagValues = tuple[str, str, str, str | None, str | None]
"""A container point's tag values besides cluster and node: namespace, pod, container, workload, kind."""
read_container_tag_values: Callable[[dict[str, Any]], ContainerTagValues] = itemgetter(
    "namespace", "pod", "container", "workload", "workload_kind"
)
"""A ``ContainerSample``'s tag values, from its ``__dict__`` (faster than its attributes)."""
PodTagValues = tuple[str, str, str | None, str | None]
"""A pod point's tag values besides cluster and node: namespace, pod, workload, workload kind."""

SLACK = 16
"""Tags a node may hold beyond twice its series before the stale ones are dropped."""

_CLUSTER = Tag.CLUSTER.value
_NODE = Tag.NODE.value
_NAMESPACE = Tag.NAMESPACE.value
_POD = Tag.POD.value
_CONTAINER = Tag.CONTAINER.value
_WORKLOAD = Tag.WORKLOAD.value
_WORKLOAD_KIND = Tag.WORKLOAD_KIND.value


class NodeTags:
    """One node's container and pod tags dicts by their values; ``seen_ns`` is the caller's clock (ns).

    The pipeline looks a series up in ``containers``/``pods`` itself (a method call per sample would cost
    more than it saves) and calls ``add_*`` when it is not there.
    """

    __slots__ = ("_cluster", "_node", "containers", "pods", "seen_ns")

    def __init__(self, *, cluster: str, node: str) -> None:
        self._cluster = sys.intern(cluster)
        self._node = sys.intern(node)
        self.containers: dict[ContainerTagValues, dict[str, str]] = {}
        self.pods: dict[PodTagValues, dict[str, str]] = {}
        self.seen_ns = 0

    def add_container(self, values: ContainerTagValues) -> dict[str, str]:
        """The tags of a container point with these values, remembered from now on."""
        namespace, pod, container = map(sys.intern, values[:3])
        workload, workload_kind = _intern(values[3]), _intern(values[4])
        tags = {
            _CLUSTER: self._cluster,
            _NODE: self._node,
            _NAMESPACE: namespace,
            _POD: pod,
            _CONTAINER: container,
        }
        if workload is not None:
            tags[_WORKLOAD] = workload
        if workload_kind is not None:
            tags[_WORKLOAD_KIND] = workload_kind
        self.containers[namespace, pod, container, workload, workload_kind] = tags
        return tags

    def add_pod(self, values: PodTagValues) -> dict[str, str]:
        """The tags of a pod point with these values, remembered from now on."""
        namespace, pod = map(sys.intern, values[:2])
        workload, workload_kind = _intern(values[2]), _intern(values[3])
        tags = {_CLUSTER: self._cluster, _NODE: self._node, _NAMESPACE: namespace, _POD: pod}
        if workload is not None:
            tags[_WORKLOAD] = workload
        if workload_kind is not None:
            tags[_WORKLOAD_KIND] = workload_kind
        self.pods[namespace, pod, workload, workload_kind] = tags
        return tags

    def forget_gone(self, containers: Sequence[ContainerSample], pods: int) -> None:
        """After a batch of ``containers`` in ``pods`` pods: once more than twice as many are held (churn,
        changed labels), keep only the batch's containers' tags and start the pods' over."""
        if len(self.containers) > 2 * len(containers) + SLACK:
            current = {read_container_tag_values(sample.__dict__) for sample in containers}
            self.containers = {values: tags for values, tags in self.containers.items() if values in current}
        if len(self.pods) > 2 * pods + SLACK:
            self.pods = {}


def _intern(value: str | None) -> str | None:
    return None if value is None else sys.intern(value)

"""metrics.k8s.io objects rendered straight to JSON bytes, exactly as ``schemas_metrics_k8s`` describes them.

``kubectl top pods -A`` on a large cluster lists every pod: 30,000 pods are 60,000 containers, and a pydantic
model per object, validated again against the response model on the way out, cost seconds. The routes
render text instead; the response models remain the OpenAPI documentation, and the tests check the bytes
against them. Strings that come from outside (names, labels) are escaped by orjson; quantities and times
are canonical ASCII. Each distinct sample time is formatted once.

A pod's text is made of two parts around its ``creationTimestamp``, which is the response's own time: the
parts can be rendered once and kept (``ObjectTexts``, what ``pod_list_view`` does) and joined into any number
of responses.

Usage::

    body = pod_metrics_list(service.pod_usage(), now_ns=service.now_ns(), resolution_ns=10**10)
    body = node_metrics(service.node_usage("n1")[0], now_ns=..., resolution_ns=...)
    texts = ObjectTexts(resolution_ns=10**10)
    before, rest = texts.parts("shop", "web-1", time_ns, containers)     # kept; labels_text(labels) apart
    body = pod_metrics_list_of_parts([(before, labels_text(labels), rest)], now_ns=...)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import orjson

from aggregator.api.schemas_metrics_k8s import GROUP_VERSION
from aggregator.query.quantity import cpu_quantity, memory_quantity
from aggregator.query.service import NodeUsage, PodUsage, Usage
from aggregator.query.store import ContainerLatest
from aggregator.query.timefmt import go_duration, kubernetes_time

_POD_HEAD = f'{{"kind":"PodMetrics","apiVersion":"{GROUP_VERSION}","metadata":{{"name":'
_NODE_HEAD = f'{{"kind":"NodeMetrics","apiVersion":"{GROUP_VERSION}","metadata":{{"name":'
_POD_LIST_HEAD = f'{{"kind":"PodMetricsList","apiVersion":"{GROUP_VERSION}","metadata":{{}},"items":['
_NODE_LIST_HEAD = f'{{"kind":"NodeMetricsList","apiVersion":"{GROUP_VERSION}","metadata":{{}},"items":['
_LIST_TAIL = "]}"

_KEPT = 4096
"""Most escaped names and formatted times a ``ObjectTexts`` keeps; beyond that it starts over."""

PodParts = tuple[str, str, str]
"""A ``PodMetrics`` text before its ``creationTimestamp`` (which is the response's time), its labels
(:func:`labels_text`) and the rest."""


def pod_metrics_list(pods: Iterable[PodUsage], *, now_ns: int, resolution_ns: int) -> bytes:
    """``pods`` as a ``PodMetricsList`` created at ``now_ns`` (epoch ns), window ``resolution_ns`` (ns)."""
    texts = ObjectTexts(resolution_ns=resolution_ns)
    return pod_metrics_list_of_parts([_parts(texts, pod) for pod in pods], now_ns=now_ns)


def pod_metrics_list_of_parts(parts: Iterable[PodParts], *, now_ns: int) -> bytes:
    """A ``PodMetricsList`` of pods in :data:`PodParts`, created at ``now_ns`` (epoch ns)."""
    created = _created(now_ns)
    return _list(_POD_LIST_HEAD, [f"{before}{created}{labels}{rest}" for before, labels, rest in parts])


def pod_metrics(pod: PodUsage, *, now_ns: int, resolution_ns: int) -> bytes:
    """One ``PodMetrics``; ``now_ns`` and ``resolution_ns`` in ns as for :func:`pod_metrics_list`."""
    before, labels, rest = _parts(ObjectTexts(resolution_ns=resolution_ns), pod)
    return f"{before}{_created(now_ns)}{labels}{rest}".encode()


def node_metrics_list(nodes: Iterable[NodeUsage], *, now_ns: int, resolution_ns: int) -> bytes:
    """A ``NodeMetricsList``; ``now_ns`` and ``resolution_ns`` in ns as for :func:`pod_metrics_list`."""
    texts = ObjectTexts(resolution_ns=resolution_ns)
    created = _created(now_ns)
    return _list(_NODE_LIST_HEAD, [texts.node(node, created) for node in nodes])


def node_metrics(node: NodeUsage, *, now_ns: int, resolution_ns: int) -> bytes:
    """One ``NodeMetrics``; ``now_ns`` and ``resolution_ns`` in ns as for :func:`pod_metrics_list`."""
    return ObjectTexts(resolution_ns=resolution_ns).node(node, _created(now_ns)).encode()


def _parts(texts: ObjectTexts, pod: PodUsage) -> PodParts:
    before, rest = texts.parts(pod.namespace, pod.name, pod.time_ns, pod.containers)
    return before, labels_text(pod.labels), rest


def _list(head: str, items: list[str]) -> bytes:
    return f"{head}{','.join(items)}{_LIST_TAIL}".encode()


def _created(now_ns: int) -> str:
    return f',"creationTimestamp":"{kubernetes_time(now_ns)}"'


def _string(text: str) -> str:
    return orjson.dumps(text).decode()


def _usage(usage: Usage) -> str:
    cpu, memory = cpu_quantity(usage.cpu_millicores), memory_quantity(usage.memory_bytes)
    return f'{{"cpu":"{cpu}","memory":"{memory}"}}'


class ObjectTexts:
    """Renders objects for one resolution, keeping the texts that repeat: escaped namespaces and container
    names, formatted sample times (a bounded number of each)."""

    __slots__ = ("_container_heads", "_namespaces", "_timings", "_window")

    def __init__(self, *, resolution_ns: int) -> None:
        self._window = go_duration(resolution_ns)
        # Per sample time: a whole list has only a few distinct buckets.
        self._timings: dict[int, str] = {}
        self._namespaces: dict[str, str] = {}
        # Per container name: its object's text up to the CPU quantity.
        self._container_heads: dict[str, str] = {}

    def parts(
        self, namespace: str, name: str, time_ns: int, containers: Iterable[ContainerLatest]
    ) -> tuple[str, str]:
        """A pod's text before its ``creationTimestamp``, and after its labels (``PodUsage``'s fields)."""
        heads = self._container_heads
        texts = []
        for container, (_, (cpu, memory)) in containers:
            head = heads.get(container)
            if head is None:
                if len(heads) >= _KEPT:
                    heads.clear()
                head = heads[container] = f'{{"name":{_string(container)},"usage":{{"cpu":"'
            # One f-string per container, no object: this loop runs 60,000 times for 30,000 pods.
            texts.append(f'{head}{cpu_quantity(cpu)}","memory":"{memory_quantity(memory)}"}}}}')
        return (
            f'{_POD_HEAD}{_string(name)},"namespace":{self._namespace(namespace)}',
            f'}},{self._timing(time_ns)},"containers":[{",".join(texts)}]}}',
        )

    def node(self, node: NodeUsage, created: str) -> str:
        """``node``'s text with ``created`` (``,"creationTimestamp":...``) in its metadata."""
        usage = node.usage
        return (
            f"{_NODE_HEAD}{_string(usage.name)}{created}{labels_text(node.labels)}}},"
            f'{self._timing(usage.time_ns)},"usage":{_usage(usage)}}}'
        )

    def _namespace(self, namespace: str) -> str:
        escaped = self._namespaces.get(namespace)
        if escaped is None:
            if len(self._namespaces) >= _KEPT:
                self._namespaces.clear()
            escaped = self._namespaces[namespace] = _string(namespace)
        return escaped

    def _timing(self, time_ns: int) -> str:
        timing = self._timings.get(time_ns)
        if timing is None:
            if len(self._timings) >= _KEPT:
                self._timings.clear()
            timing = self._timings[time_ns] = (
                f'"timestamp":"{kubernetes_time(time_ns)}","window":"{self._window}"'
            )
        return timing


def labels_text(labels: Mapping[str, str]) -> str:
    """The ``"labels"`` member of an object's metadata, with its leading comma; empty for no labels."""
    if not labels:
        return ""  # Kubernetes omits empty labels
    # orjson serialises only real dicts; the store's labels are dicts, any other Mapping is copied.
    return f',"labels":{orjson.dumps(labels, default=dict).decode()}'

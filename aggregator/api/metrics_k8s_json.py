"""metrics.k8s.io objects rendered straight to JSON bytes, exactly as ``schemas_metrics_k8s`` describes them.

``kubectl top pods -A`` on a large cluster lists every pod: 30,000 pods are 60,000 containers, and a pydantic
model per object, validated again against the response model on the way out, cost seconds. The routes
render text instead; the response models remain the OpenAPI documentation, and the tests check the bytes
against them. Strings that come from outside (names, labels) are escaped by orjson; quantities and times
are canonical ASCII. Each distinct sample time is formatted once per response.

Usage::

    body = pod_metrics_list(service.pod_usage(), now_ns=service.now_ns(), resolution_ns=10**10)
    body = node_metrics(service.node_usage("n1")[0], now_ns=..., resolution_ns=...)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import orjson

from aggregator.api.schemas_metrics_k8s import GROUP_VERSION
from aggregator.query.quantity import cpu_quantity, memory_quantity
from aggregator.query.service import NodeUsage, PodUsage, Usage
from aggregator.query.timefmt import go_duration, kubernetes_time

_POD_HEAD = f'{{"kind":"PodMetrics","apiVersion":"{GROUP_VERSION}","metadata":{{"name":'
_NODE_HEAD = f'{{"kind":"NodeMetrics","apiVersion":"{GROUP_VERSION}","metadata":{{"name":'
_POD_LIST_HEAD = f'{{"kind":"PodMetricsList","apiVersion":"{GROUP_VERSION}","metadata":{{}},"items":['
_NODE_LIST_HEAD = f'{{"kind":"NodeMetricsList","apiVersion":"{GROUP_VERSION}","metadata":{{}},"items":['
_LIST_TAIL = "]}"


def pod_metrics_list(pods: Iterable[PodUsage], *, now_ns: int, resolution_ns: int) -> bytes:
    """``pods`` as a ``PodMetricsList`` created at ``now_ns`` (epoch ns), window ``resolution_ns`` (ns)."""
    render = _Renderer(now_ns, resolution_ns)
    return _list(_POD_LIST_HEAD, [render.pod(pod) for pod in pods])


def pod_metrics(pod: PodUsage, *, now_ns: int, resolution_ns: int) -> bytes:
    """One ``PodMetrics``; ``now_ns`` and ``resolution_ns`` in ns as for :func:`pod_metrics_list`."""
    return _Renderer(now_ns, resolution_ns).pod(pod).encode()


def node_metrics_list(nodes: Iterable[NodeUsage], *, now_ns: int, resolution_ns: int) -> bytes:
    """A ``NodeMetricsList``; ``now_ns`` and ``resolution_ns`` in ns as for :func:`pod_metrics_list`."""
    render = _Renderer(now_ns, resolution_ns)
    return _list(_NODE_LIST_HEAD, [render.node(node) for node in nodes])


def node_metrics(node: NodeUsage, *, now_ns: int, resolution_ns: int) -> bytes:
    """One ``NodeMetrics``; ``now_ns`` and ``resolution_ns`` in ns as for :func:`pod_metrics_list`."""
    return _Renderer(now_ns, resolution_ns).node(node).encode()


def _list(head: str, items: list[str]) -> bytes:
    return f"{head}{','.join(items)}{_LIST_TAIL}".encode()


def _string(text: str) -> str:
    return orjson.dumps(text).decode()


def _usage(usage: Usage) -> str:
    cpu, memory = cpu_quantity(usage.cpu_millicores), memory_quantity(usage.memory_bytes)
    return f'{{"cpu":"{cpu}","memory":"{memory}"}}'


class _Renderer:
    """What one response shares: ``creationTimestamp``, ``window`` and the texts that repeat in it."""

    __slots__ = ("_container_heads", "_created", "_repeated", "_timings", "_window")

    def __init__(self, now_ns: int, resolution_ns: int) -> None:
        self._created = f',"creationTimestamp":"{kubernetes_time(now_ns)}"'
        self._window = go_duration(resolution_ns)
        # Per sample time: a whole list has only a few distinct buckets.
        self._timings: dict[int, str] = {}
        # Escaped namespaces, which recur across pods.
        self._repeated: dict[str, str] = {}
        # Per container name (which recur across pods): its object's text up to the CPU quantity.
        self._container_heads: dict[str, str] = {}

    def _recurring(self, text: str) -> str:
        escaped = self._repeated.get(text)
        if escaped is None:
            escaped = self._repeated[text] = _string(text)
        return escaped

    def _timing(self, time_ns: int) -> str:
        timing = self._timings.get(time_ns)
        if timing is None:
            timing = self._timings[time_ns] = (
                f'"timestamp":"{kubernetes_time(time_ns)}","window":"{self._window}"'
            )
        return timing

    def pod(self, pod: PodUsage) -> str:
        heads = self._container_heads
        containers = []
        for name, (_, (cpu, memory)) in pod.containers:
            head = heads.get(name)
            if head is None:
                head = heads[name] = f'{{"name":{_string(name)},"usage":{{"cpu":"'
            # One f-string per container, no object: this loop runs 60,000 times for 30,000 pods.
            containers.append(f'{head}{cpu_quantity(cpu)}","memory":"{memory_quantity(memory)}"}}}}')
        return (
            f"{_POD_HEAD}{_string(pod.name)},"
            f'"namespace":{self._recurring(pod.namespace)}{self._created}{_labels(pod.labels)}}},'
            f'{self._timing(pod.time_ns)},"containers":[{",".join(containers)}]}}'
        )

    def node(self, node: NodeUsage) -> str:
        usage = node.usage
        return (
            f"{_NODE_HEAD}{_string(usage.name)}{self._created}{_labels(node.labels)}}},"
            f'{self._timing(usage.time_ns)},"usage":{_usage(usage)}}}'
        )


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""  # Kubernetes omits empty labels
    # orjson serialises only real dicts; the store's labels are dicts, any other Mapping is copied.
    return f',"labels":{orjson.dumps(labels, default=dict).decode()}'

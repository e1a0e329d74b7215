"""The hand-rendered metrics.k8s.io JSON against the response models it stands in for, byte for byte."""

from __future__ import annotations

from types import MappingProxyType

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.api.metrics_k8s_json import node_metrics, node_metrics_list, pod_metrics, pod_metrics_list
from aggregator.api.schemas_metrics_k8s import (
    ContainerMetrics,
    NodeMetrics,
    NodeMetricsList,
    ObjectMeta,
    PodMetrics,
    PodMetricsList,
    ResourceUsage,
)
from aggregator.query.quantity import cpu_quantity, memory_quantity
from aggregator.query.service import NodeUsage, PodUsage, Usage
from aggregator.query.store import ContainerLatest
from aggregator.query.timefmt import go_duration, kubernetes_time

NOW = 1_714_557_608_250_000_000
"""2024-05-01T10:00:08.25Z"""
RESOLUTION = 10_000_000_000


def _usage(usage: Usage) -> ResourceUsage:
    return ResourceUsage(cpu=cpu_quantity(usage.cpu_millicores), memory=memory_quantity(usage.memory_bytes))


def _container(container: ContainerLatest) -> ContainerMetrics:
    name, (_, (cpu, memory)) = container
    return ContainerMetrics(
        name=name, usage=ResourceUsage(cpu=cpu_quantity(cpu), memory=memory_quantity(memory))
    )


def _model(pod: PodUsage) -> PodMetrics:
    """The pod as the route built it before: one pydantic model per object."""
    return PodMetrics(
        metadata=ObjectMeta(
            name=pod.name,
            namespace=pod.namespace,
            creation_timestamp=kubernetes_time(NOW),
            labels=dict(pod.labels) or None,
        ),
        timestamp=kubernetes_time(pod.time_ns),
        window=go_duration(RESOLUTION),
        containers=[_container(container) for container in pod.containers],
    )


def _node_model(node: NodeUsage) -> NodeMetrics:
    return NodeMetrics(
        metadata=ObjectMeta(
            name=node.usage.name,
            creation_timestamp=kubernetes_time(NOW),
            labels=dict(node.labels) or None,
        ),
        timestamp=kubernetes_time(node.usage.time_ns),
        window=go_duration(RESOLUTION),
        usage=_usage(node.usage),
    )


def _dumped(model: PodMetrics | PodMetricsList | NodeMetrics | NodeMetricsList) -> bytes:
    # What FastAPI sent for a response model with response_model_exclude_none.
    return model.model_dump_json(by_alias=True, exclude_none=True).encode()


names = st.text(min_size=1, max_size=20)
labels = st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3)
times = st.integers(min_value=0, max_value=2**62).map(lambda ns: ns - ns % RESOLUTION)
cpu = st.floats(min_value=0, max_value=1e9, allow_nan=False) | st.sampled_from([0.0, 250.0, 1500.0, 5.0])
memory = st.floats(min_value=0, max_value=2.0**60, allow_nan=False) | st.integers(0, 2**40).map(
    lambda pages: float(pages * 4096)
)
usages = st.builds(Usage, name=names, time_ns=times, cpu_millicores=cpu, memory_bytes=memory)
# A container as the store hands it over: (name, (time_ns, (cpu millicores, memory bytes))).
container_latests = st.tuples(names, st.tuples(times, st.tuples(cpu, memory)))
pods = st.builds(
    PodUsage,
    namespace=names,
    name=names,
    time_ns=times,
    containers=st.lists(container_latests, min_size=1, max_size=3).map(tuple),
    labels=labels,
)
nodes = st.builds(NodeUsage, usage=usages, labels=labels)


@settings(max_examples=200, deadline=None)
@given(st.lists(pods, max_size=5))
def test_a_pod_list_is_exactly_what_the_response_model_serialises(listed: list[PodUsage]) -> None:
    body = pod_metrics_list(listed, now_ns=NOW, resolution_ns=RESOLUTION)
    assert body == _dumped(PodMetricsList(items=[_model(pod) for pod in listed]))
    PodMetricsList.model_validate_json(body)


@settings(max_examples=200, deadline=None)
@given(st.lists(nodes, max_size=5))
def test_a_node_list_is_exactly_what_the_response_model_serialises(listed: list[NodeUsage]) -> None:
    body = node_metrics_list(listed, now_ns=NOW, resolution_ns=RESOLUTION)
    assert body == _dumped(NodeMetricsList(items=[_node_model(node) for node in listed]))


@settings(max_examples=100, deadline=None)
@given(pods, nodes)
def test_single_objects_are_what_the_response_models_serialise(pod: PodUsage, node: NodeUsage) -> None:
    assert pod_metrics(pod, now_ns=NOW, resolution_ns=RESOLUTION) == _dumped(_model(pod))
    assert node_metrics(node, now_ns=NOW, resolution_ns=RESOLUTION) == _dumped(_node_model(node))


def test_the_shape_kubectl_reads() -> None:
    pod = PodUsage(
        namespace="shop",
        name='we"b-1',
        time_ns=1_714_557_600_000_000_000,
        containers=(
            ("app", (1_714_557_600_000_000_000, (250.0, 64 * 2**20))),
            ("sidecar", (1_714_557_600_000_000_000, (0.123456789, 12_641_280.0))),
        ),
        # Labels as a read-only mapping, not a dict: still rendered.
        labels=MappingProxyType({"app": "web", "tier": "front"}),
    )
    bare = PodUsage("default", "redis", 1_714_557_590_000_000_000, (("redis", (0, (1500.0, 1000.0))),), {})
    body = orjson.loads(pod_metrics_list([pod, bare], now_ns=NOW, resolution_ns=RESOLUTION))
    assert body == {
        "kind": "PodMetricsList",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {},
        "items": [
            {
                "kind": "PodMetrics",
                "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {
                    "name": 'we"b-1',
                    "namespace": "shop",
                    "creationTimestamp": "2024-05-01T10:00:08Z",
                    "labels": {"app": "web", "tier": "front"},
                },
                "timestamp": "2024-05-01T10:00:00Z",
                "window": "10s",
                "containers": [
                    {"name": "app", "usage": {"cpu": "250m", "memory": "64Mi"}},
                    {"name": "sidecar", "usage": {"cpu": "123457n", "memory": "12345Ki"}},
                ],
            },
            {
                "kind": "PodMetrics",
                "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {
                    "name": "redis",
                    "namespace": "default",
                    "creationTimestamp": "2024-05-01T10:00:08Z",
                },
                "timestamp": "2024-05-01T09:59:50Z",
                "window": "10s",
                "containers": [{"name": "redis", "usage": {"cpu": "1500m", "memory": "1k"}}],
            },
        ],
    }
    assert list(body["items"][0]) == ["kind", "apiVersion", "metadata", "timestamp", "window", "containers"]
    assert list(body["items"][0]["metadata"]) == ["name", "namespace", "creationTimestamp", "labels"]

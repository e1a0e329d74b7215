"""metrics.k8s.io/v1beta1 through the real app: the documents ``kubectl top`` reads, exactly in shape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.aggregator.query.apps import RunningAggregator, running_aggregator
from tests.aggregator.query.simulation import NS_PER_S, SimContainer, Simulation

API = "/apis/metrics.k8s.io/v1beta1"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def running() -> Iterator[RunningAggregator]:
    sim = Simulation(
        containers=[
            SimContainer("shop", "web-1", "app", cpu_millicores=250, memory_bytes=64 * MIB),
            SimContainer("shop", "web-1", "sidecar", cpu_millicores=5, memory_bytes=12_641_280),
            SimContainer("shop", "web-2", "app", cpu_millicores=1500, memory_bytes=1000),
            SimContainer("default", "redis", "redis", node="node-2", cpu_millicores=0.123456789),
        ],
        pod_labels={
            ("shop", "web-1"): {"app": "web", "track": "stable"},
            ("shop", "web-2"): {"app": "web", "track": "canary"},
            ("default", "redis"): {"app": "redis"},
        },
        node_labels={"node-1": {"zone": "a", "kubernetes.io/os": "linux"}},
        node_cpu_millicores=1500,
        node_memory_bytes=2 * 1024**3,
    )
    with running_aggregator(sim, scrapes=4) as running:
        yield running


def test_discovery_documents_are_what_the_api_server_aggregator_reads(running: RunningAggregator) -> None:
    version = {"groupVersion": "metrics.k8s.io/v1beta1", "version": "v1beta1"}
    group = {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": "metrics.k8s.io",
        "versions": [version],
        "preferredVersion": version,
    }
    assert running.get("/apis").json() == {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]}
    assert running.get("/apis/metrics.k8s.io").json() == group
    assert running.get(API).json() == {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "metrics.k8s.io/v1beta1",
        "resources": [
            {
                "name": "nodes",
                "singularName": "",
                "namespaced": False,
                "kind": "NodeMetrics",
                "verbs": ["get", "list"],
            },
            {
                "name": "pods",
                "singularName": "",
                "namespaced": True,
                "kind": "PodMetrics",
                "verbs": ["get", "list"],
            },
        ],
    }


def test_node_metrics_are_shaped_as_metrics_server_returns_them(running: RunningAggregator) -> None:
    now = "2023-11-14T22:13:58Z"  # the clock: 8 s after the last scrape's bucket start
    body = running.get(f"{API}/nodes").json()
    assert body["kind"] == "NodeMetricsList"
    assert body["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert body["metadata"] == {}
    node_1, node_2 = body["items"]
    assert node_1 == {
        "kind": "NodeMetrics",
        "apiVersion": "metrics.k8s.io/v1beta1",
        "metadata": {
            "name": "node-1",
            "creationTimestamp": now,
            "labels": {"zone": "a", "kubernetes.io/os": "linux"},
        },
        "timestamp": "2023-11-14T22:13:50Z",
        "window": "10s",
        "usage": {"cpu": "1500m", "memory": "2Gi"},
    }
    assert "labels" not in node_2["metadata"]  # omitted when empty, as Kubernetes does
    assert running.get(f"{API}/nodes/node-2").json() == node_2


def test_pod_metrics_carry_every_container_in_canonical_quantities(running: RunningAggregator) -> None:
    body = running.get(f"{API}/namespaces/shop/pods").json()
    assert body["kind"] == "PodMetricsList"
    web_1, web_2 = body["items"]
    assert web_1["metadata"] == {
        "name": "web-1",
        "namespace": "shop",
        "creationTimestamp": "2023-11-14T22:13:58Z",
        "labels": {"app": "web", "track": "stable"},
    }
    assert web_1["timestamp"] == "2023-11-14T22:13:50Z"
    assert web_1["window"] == "10s"
    assert web_1["containers"] == [
        {"name": "app", "usage": {"cpu": "250m", "memory": "64Mi"}},
        {"name": "sidecar", "usage": {"cpu": "5m", "memory": "12345Ki"}},
    ]
    assert web_2["containers"] == [{"name": "app", "usage": {"cpu": "1500m", "memory": "1k"}}]
    redis = running.get(f"{API}/namespaces/default/pods/redis").json()
    assert redis["kind"] == "PodMetrics"
    assert redis["containers"][0]["usage"]["cpu"] == "123457n"


@pytest.mark.parametrize(
    ("path", "selector", "expected"),
    [
        ("/pods", None, ["default/redis", "shop/web-1", "shop/web-2"]),
        ("/pods", "app=web", ["shop/web-1", "shop/web-2"]),
        ("/pods", "app=web,track notin (canary)", ["shop/web-1"]),
        ("/pods", "track", ["shop/web-1", "shop/web-2"]),
        ("/pods", "!track", ["default/redis"]),
        ("/pods", "app in (redis, db)", ["default/redis"]),
        ("/pods", "app!=web", ["default/redis"]),
        ("/namespaces/shop/pods", "track=canary", ["shop/web-2"]),
        ("/namespaces/nope/pods", None, []),
        ("/nodes", "zone=a", ["node-1"]),
        ("/nodes", "kubernetes.io/os in (linux)", ["node-1"]),
        ("/nodes", "!zone", ["node-2"]),
    ],
)
def test_label_selectors_filter_the_lists(
    running: RunningAggregator, path: str, selector: str | None, expected: list[str]
) -> None:
    params = {"labelSelector": selector} if selector is not None else {}
    items = running.get(f"{API}{path}", **params).json()["items"]
    names = [
        f"{item['metadata']['namespace']}/{item['metadata']['name']}"
        if "namespace" in item["metadata"]
        else item["metadata"]["name"]
        for item in items
    ]
    assert names == expected


def test_a_malformed_selector_is_a_bad_request_status(running: RunningAggregator) -> None:
    response = running.get(f"{API}/pods", labelSelector="app in web")
    assert response.status_code == 400
    assert response.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "invalid labelSelector 'app in web': found 'web', expected: '('",
        "reason": "BadRequest",
        "code": 400,
    }


@pytest.mark.parametrize(
    ("path", "resource", "name"),
    [("/nodes/nope", "nodes", "nope"), ("/namespaces/shop/pods/nope", "pods", "nope")],
)
def test_not_found_is_the_api_servers_status(
    running: RunningAggregator, path: str, resource: str, name: str
) -> None:
    response = running.get(f"{API}{path}")
    assert response.status_code == 404
    assert response.json() == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": f'{resource}.metrics.k8s.io "{name}" not found',
        "reason": "NotFound",
        "details": {"name": name, "group": "metrics.k8s.io", "kind": resource},
        "code": 404,
    }


def test_pods_and_nodes_that_stopped_reporting_disappear(running: RunningAggregator) -> None:
    original = running.clock()
    running.clock.set(original + 60 * NS_PER_S)
    try:
        assert running.get(f"{API}/pods").json()["items"] == []
        assert running.get(f"{API}/nodes/node-1").status_code == 404
    finally:
        running.clock.set(original)


@pytest.mark.parametrize(
    ("path", "model"),
    [
        ("/nodes", "NodeMetricsList"),
        ("/nodes/{name}", "NodeMetrics"),
        ("/pods", "PodMetricsList"),
        ("/namespaces/{namespace}/pods", "PodMetricsList"),
        ("/namespaces/{namespace}/pods/{name}", "PodMetrics"),
    ],
)
def test_routes_that_render_their_own_json_still_document_their_model(
    running: RunningAggregator, path: str, model: str
) -> None:
    ok = running.get("/openapi.json").json()["paths"][f"{API}{path}"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}
    concrete = path.format(name="node-1" if "nodes" in path else "web-1", namespace="shop")
    response = running.get(f"{API}{concrete}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"

"""The query service: range defaults and steps, where the seam falls, and which entities are fresh."""

from __future__ import annotations

import re

import pytest

from aggregator.catalog import Level
from aggregator.query.errors import BadTimeError, NotFoundError
from aggregator.query.history import History
from aggregator.query.selector import parse_selector
from aggregator.query.service import QueryService, heapster_metric_for
from aggregator.query.store import RecentStore
from tests.aggregator.query.simulation import NS_PER_S, SimContainer, Simulation, make_pipeline
from tests.aggregator.query.test_history import FakeInflux, Series

RES = 10 * NS_PER_S
CPU = "cpu_usage_millicores"


def _running(scrapes: int = 20, history: History | None = None) -> tuple[Simulation, QueryService]:
    sim = Simulation(
        containers=[
            SimContainer("shop", "web-1", "app", cpu_millicores=250),
            SimContainer("shop", "web-1", "sidecar", cpu_millicores=50),
            SimContainer("shop", "web-2", "app", node="node-2", cpu_millicores=700),
        ],
        pod_labels={("shop", "web-1"): {"app": "web", "track": "stable"}, ("shop", "web-2"): {"app": "web"}},
        node_labels={"node-1": {"zone": "a"}, "node-2": {"zone": "b"}},
    )
    store = RecentStore(resolution_seconds=10, window_seconds=60, eviction_seconds=3600)
    sim.run(make_pipeline(sim), store, scrapes)
    return sim, QueryService(store, cluster="test", history=history, clock_ns=sim.now_ns)


def test_without_start_the_whole_window_is_returned_and_without_end_up_to_now() -> None:
    sim, service = _running()
    series = service.series(Level.POD, ("test", "shop", "web-1"), CPU, None, None)
    assert [value for _, value in series] == pytest.approx([300.0] * 6)
    assert series[-1][0] == sim.scrape_time_ns(19) - NS_PER_S // 2


def test_the_step_keeps_answers_within_max_points() -> None:
    _, service = _running(scrapes=2)
    assert service.step_ns(0, 999 * RES) == RES
    assert service.step_ns(0, 1000 * RES) == 2 * RES
    assert service.step_ns(0, 86_400 * NS_PER_S) == 9 * RES


def test_start_after_end_is_refused() -> None:
    _, service = _running(scrapes=2)
    with pytest.raises(BadTimeError, match="after end"):
        service.series(Level.NODE, ("test", "node-1"), CPU, 2 * RES, RES)


def test_history_is_asked_only_for_what_lies_before_the_window_and_never_for_a_bucket_memory_serves() -> None:
    fake = FakeInflux()
    sim, service = _running(history=History(fake, resolution_ns=RES))
    span = service.store.span()
    assert span is not None
    fake.answer = [Series(["time", "mean"], [[span[0] - 2 * RES, 1.0], [span[0] - RES, 2.0]])]

    series = service.series(Level.NODE, ("test", "node-1"), CPU, span[0] - 2 * RES, sim.now_ns())

    (statement,) = fake.statements
    assert f"time < {span[0]}" in statement
    assert [time for time, _ in series] == [span[0] + i * RES for i in range(-2, 6)]
    assert [value for _, value in series][:2] == [1.0, 2.0]

    fake.statements.clear()
    service.series(Level.NODE, ("test", "node-1"), CPU, span[0], sim.now_ns())
    assert fake.statements == [], "a range inside the window never reaches InfluxDB"


def test_latest_usage_covers_fresh_entities_with_labels_and_selectors() -> None:
    _, service = _running()
    pods = service.pod_usage(selector=parse_selector("app=web,track!=canary"))
    assert [(pod.namespace, pod.name) for pod in pods] == [("shop", "web-1"), ("shop", "web-2")]
    assert [(name, cpu) for name, (_, (cpu, _)) in pods[0].containers] == [
        ("app", pytest.approx(250.0)),
        ("sidecar", pytest.approx(50.0)),
    ]
    assert [pod.name for pod in service.pod_usage(selector=parse_selector("track=stable"))] == ["web-1"]
    nodes = service.node_usage(selector=parse_selector("zone in (b)"))
    assert [node.usage.name for node in nodes] == ["node-2"]


def test_entities_that_stopped_reporting_drop_out_of_the_latest_usage() -> None:
    sim, service = _running()
    later = sim.now_ns() + 4 * RES
    stale = QueryService(service.store, cluster="test", clock_ns=lambda: later)
    assert stale.pod_usage() == []
    assert stale.node_usage() == []


def test_unknown_entities_and_metrics_are_named_in_the_error() -> None:
    _, service = _running(scrapes=2)
    with pytest.raises(NotFoundError, match=re.escape("pod 'shop/nope' not found")):
        service.entity(Level.POD, "shop", "nope")
    with pytest.raises(NotFoundError, match="unknown metric 'cpu/nope'"):
        heapster_metric_for("cpu/nope", Level.POD)
    with pytest.raises(NotFoundError, match="does not exist for a pod"):
        heapster_metric_for("cpu/node_capacity", Level.POD)


def test_a_container_that_stopped_drops_out_of_its_pod_and_pods_filter_by_namespace_and_name() -> None:
    sidecar = SimContainer("shop", "web-1", "sidecar", cpu_millicores=50)
    sim = Simulation(
        containers=[
            SimContainer("shop", "web-1", "zz-app", cpu_millicores=250),
            sidecar,
            SimContainer("shop", "web-2", "app", cpu_millicores=700),
            SimContainer("other", "web-1", "app", node="node-2", cpu_millicores=10),
        ]
    )
    store = RecentStore(resolution_seconds=10, window_seconds=60, eviction_seconds=3600)
    pipeline = make_pipeline(sim)
    sim.run(pipeline, store, 5)
    service = QueryService(store, cluster="test", clock_ns=sim.now_ns)
    (both,) = service.pod_usage(namespace="shop", name="web-1")
    assert [name for name, _ in both.containers] == ["sidecar", "zz-app"]

    sim.containers.remove(sidecar)
    sim.run(pipeline, store, 1)

    (web_1,) = service.pod_usage(namespace="shop", name="web-1")
    assert web_1.time_ns > both.time_ns
    assert [(name, time_ns) for name, (time_ns, _) in web_1.containers] == [("zz-app", web_1.time_ns)]
    assert [(pod.namespace, pod.name) for pod in service.pod_usage(namespace="shop")] == [
        ("shop", "web-1"),
        ("shop", "web-2"),
    ]
    assert [(pod.namespace, pod.name) for pod in service.pod_usage(name="web-1")] == [
        ("other", "web-1"),
        ("shop", "web-1"),
    ]

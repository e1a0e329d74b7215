"""The pods query benchmark end to end: a preloaded server process, kept fresh, serving every pod."""

from __future__ import annotations

from benchmarks import api


def test_the_pods_query_benchmark_serves_every_pod_it_loaded() -> None:
    measures = {measure.name: measure for measure in api.pods_query_measures(nodes=2, queries=3)}
    items = measures["query.metrics_k8s.pods.p60.items"]
    assert items.value == items.target == 60
    assert items.met
    assert measures["query.metrics_k8s.pods.p60.latency_p50"].value > 0
    assert (
        measures["query.metrics_k8s.pods.p60.latency_p50"].value
        <= measures["query.metrics_k8s.pods.p60.latency_p99"].value
    )

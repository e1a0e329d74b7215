"""The store's pod-ordered read for metrics.k8s.io's pod lists: the same answer as grouping the per-container
latest values by pod, through new containers, containers on two nodes, stopped containers and eviction."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.catalog import Level
from aggregator.points import Point
from aggregator.query.store import LATEST_FIELDS, ContainerLatest, PodLatest, RecentStore
from tests.aggregator.query.test_store import CPU, MEM, bucket


def _point(
    index: int, node: str, namespace: str, pod: str, container: str, fields: dict[str, float]
) -> Point:
    tags = {"cluster": "c1", "node": node, "namespace": namespace, "pod": pod, "container": container}
    return Point("container", tags, fields, bucket(index))


def _grouped(recent: RecentStore, not_before_ns: int) -> list[PodLatest]:
    """What the query service built before the index: every container's latest value, grouped by pod, each
    pod at its newest bucket with the containers that have it."""
    pods: dict[tuple[str, str], list[ContainerLatest]] = {}
    for (cluster, namespace, pod, container), found in recent.latest(
        Level.CONTAINER, LATEST_FIELDS, not_before_ns=not_before_ns
    ).items():
        if cluster == "c1":
            pods.setdefault((namespace, pod), []).append((container, found))
    grouped: list[PodLatest] = []
    for (namespace, pod), containers in sorted(pods.items()):
        newest = max(found[0] for _, found in containers)
        current = sorted(entry for entry in containers if entry[1][0] == newest)
        grouped.append((namespace, pod, newest, tuple(current)))
    return grouped


def test_a_container_that_stopped_is_left_out_of_its_pod_until_the_pod_is_gone() -> None:
    recent = RecentStore(resolution_seconds=10, window_seconds=60, eviction_seconds=30)
    full = {CPU: 1.0, MEM: 2.0}
    for i in range(3):
        recent.add(
            [_point(i, "n1", "ns", "p", "app", full), _point(i, "n1", "ns", "p", "side", full)],
            now_ns=bucket(i),
        )
    recent.add([_point(3, "n1", "ns", "p", "app", {CPU: 5.0, MEM: 6.0})], now_ns=bucket(3))
    assert recent.latest_by_pod("c1", not_before_ns=0) == [
        ("ns", "p", bucket(3), (("app", (bucket(3), (5.0, 6.0))),))
    ]
    assert recent.latest_by_pod("c1", not_before_ns=bucket(4)) == []
    assert recent.latest_by_pod("other-cluster", not_before_ns=0) == []

    # Both stop; once evicted the pod is gone from the index as well.
    recent.add([_point(9, "n1", "ns", "q", "app", full)], now_ns=bucket(9))
    assert [(namespace, pod) for namespace, pod, _, _ in recent.latest_by_pod("c1", not_before_ns=0)] == [
        ("ns", "q")
    ]


def test_when_the_first_node_of_a_container_is_evicted_the_pod_reads_only_the_node_left() -> None:
    recent = RecentStore(resolution_seconds=10, window_seconds=600, eviction_seconds=30)
    for i in range(3):
        recent.add(
            [
                _point(i, "n1", "ns", "p", "app", {CPU: 1.0, MEM: 10.0}),
                _point(i, "n2", "ns", "p", "app", {CPU: 2.0, MEM: 20.0}),
            ],
            now_ns=bucket(i),
        )
    # n1 stops; n2 goes on without memory, so its newest complete bucket stays 2, n1's too until evicted.
    for i in range(3, 8):
        recent.add([_point(i, "n2", "ns", "p", "app", {CPU: 2.0})], now_ns=bucket(i))
    assert recent.latest_by_pod("c1", not_before_ns=0) == [
        ("ns", "p", bucket(2), (("app", (bucket(2), (2.0, 20.0))),))
    ]


_writes = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=12),  # bucket
        st.sampled_from(["n1", "n2"]),
        st.sampled_from(["a", "a-b", "b"]),  # namespace
        st.sampled_from(["p", "q"]),  # pod
        st.sampled_from(["app", "side"]),  # container
        st.dictionaries(st.sampled_from([CPU, MEM]), st.sampled_from([1.0, 2.0, 64.0]), max_size=2),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    _writes,
    st.integers(min_value=0, max_value=12),
    st.sampled_from([None, "a", "a-b"]),
    st.sampled_from([None, "p"]),
)
def test_the_pod_read_is_the_per_container_latest_grouped_by_pod(
    writes: list[tuple[int, str, str, str, str, dict[str, float]]],
    not_before: int,
    namespace: str | None,
    pod: str | None,
) -> None:
    # Eviction well inside the window, so series (and whole pods) come and go while the writes go on, and
    # what an evicted series last held would still count if the index kept it.
    recent = RecentStore(resolution_seconds=10, window_seconds=120, eviction_seconds=30)
    newest = 0
    for index, node, in_namespace, in_pod, container, fields in writes:
        newest = max(newest, index)
        recent.add([_point(index, node, in_namespace, in_pod, container, fields)], now_ns=bucket(newest))

    expected = [
        entry
        for entry in _grouped(recent, bucket(not_before))
        if (namespace is None or entry[0] == namespace) and (pod is None or entry[1] == pod)
    ]
    assert (
        recent.latest_by_pod("c1", not_before_ns=bucket(not_before), namespace=namespace, pod=pod) == expected
    )

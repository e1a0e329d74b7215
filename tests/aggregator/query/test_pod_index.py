"""The pod index: pods in (cluster, namespace, name) order with their containers by name, through puts,
replacements and removals, and the namespace and name lookups metrics.k8s.io's routes make."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.query.pod_index import PodIndex


def test_pods_come_in_namespace_and_name_order_with_their_containers_by_name() -> None:
    index: PodIndex[int] = PodIndex()
    index.put(("c1", "shop", "web-2"), "app", 1)
    index.put(("c1", "shop", "web-1"), "zz-sidecar", 2)
    index.put(("c1", "shop", "web-1"), "app", 3)
    index.put(("c1", "default", "redis"), "redis", 4)
    index.put(("c0", "shop", "web-1"), "app", 5)  # another cluster

    assert index.pods("c1") == [
        (("c1", "default", "redis"), [("redis", 4)]),
        (("c1", "shop", "web-1"), [("app", 3), ("zz-sidecar", 2)]),
        (("c1", "shop", "web-2"), [("app", 1)]),
    ]
    assert [key for key, _ in index.pods("c1", namespace="shop")] == [
        ("c1", "shop", "web-1"),
        ("c1", "shop", "web-2"),
    ]
    assert index.pods("c1", namespace="shop", pod="web-1") == [
        (("c1", "shop", "web-1"), [("app", 3), ("zz-sidecar", 2)])
    ]
    assert [key for key, _ in index.pods("c1", pod="web-1")] == [("c1", "shop", "web-1")]
    assert index.pods("c1", namespace="nope") == []
    assert index.pods("c9") == []
    assert len(index) == 4


def test_a_namespace_is_matched_whole_not_as_a_prefix_of_another() -> None:
    index: PodIndex[int] = PodIndex()
    for namespace in ("a", "a-b", "ab", "b"):
        index.put(("c1", namespace, "p"), "x", 0)
    assert [key[1] for key, _ in index.pods("c1", namespace="a")] == ["a"]
    assert [key[1] for key, _ in index.pods("c1", namespace="a-b")] == ["a-b"]


def test_a_put_replaces_and_removing_the_last_container_removes_the_pod() -> None:
    index: PodIndex[str] = PodIndex()
    index.put(("c1", "ns", "p"), "app", "old")
    index.put(("c1", "ns", "p"), "app", "new")
    index.put(("c1", "ns", "p"), "side", "s")
    assert index.pods("c1") == [(("c1", "ns", "p"), [("app", "new"), ("side", "s")])]

    index.remove(("c1", "ns", "p"), "app")
    index.remove(("c1", "ns", "p"), "unknown")  # ignored
    index.remove(("c1", "ns", "unknown"), "app")  # ignored
    assert index.pods("c1") == [(("c1", "ns", "p"), [("side", "s")])]
    index.remove(("c1", "ns", "p"), "side")
    assert index.pods("c1") == []
    assert len(index) == 0


_names = st.sampled_from(["a", "b", "a-b", "zz"])
_operations = st.lists(st.tuples(st.booleans(), _names, _names, _names, st.integers()), max_size=60)


@settings(max_examples=300, deadline=None)
@given(_operations)
def test_the_index_agrees_with_a_plain_dict_sorted_on_every_read(
    operations: list[tuple[bool, str, str, str, int]],
) -> None:
    index: PodIndex[int] = PodIndex()
    model: dict[tuple[str, str, str], int] = {}
    for put, namespace, pod, container, value in operations:
        if put:
            index.put(("c1", namespace, pod), container, value)
            model[namespace, pod, container] = value
        else:
            index.remove(("c1", namespace, pod), container)
            model.pop((namespace, pod, container), None)
    pods: dict[tuple[str, ...], list[tuple[str, int]]] = {}
    for (namespace, pod, container), value in sorted(model.items()):
        pods.setdefault(("c1", namespace, pod), []).append((container, value))
    assert index.pods("c1") == sorted(pods.items())
    for namespace in ("a", "a-b"):
        assert index.pods("c1", namespace=namespace) == [
            entry for entry in sorted(pods.items()) if entry[0][1] == namespace
        ]
    assert len(index) == len(pods)

"""A node's shared tags dicts: what they hold, one interned copy of each name, and forgetting stale ones."""

from __future__ import annotations

import sys

from aggregator.tags import SLACK, NodeTags
from collector.wire import ContainerSample


def _copy(text: str) -> str:
    """An equal string that is not the same object (as each parsed batch brings)."""
    return "".join(list(text))


def _sample(pod: str, container: str = "app") -> ContainerSample:
    return ContainerSample(
        container_id=f"id-{pod}-{container}", timestamp_ns=1, namespace="shop", pod=pod, container=container
    )


def test_a_container_and_a_pod_get_their_points_tags_with_no_absent_workload() -> None:
    known = NodeTags(cluster="c1", node="n1")
    tags = known.add_container(("shop", "web-1", "app", "web", "Deployment"))
    assert tags == {
        "cluster": "c1",
        "node": "n1",
        "namespace": "shop",
        "pod": "web-1",
        "container": "app",
        "workload": "web",
        "workload_kind": "Deployment",
    }
    assert known.add_pod(("shop", "solo", None, None)) == {
        "cluster": "c1",
        "node": "n1",
        "namespace": "shop",
        "pod": "solo",
    }
    assert known.containers[("shop", "web-1", "app", "web", "Deployment")] is tags
    assert ("shop", "solo", None, None) in known.pods


def test_names_are_interned_so_every_holder_shares_one_copy() -> None:
    known = NodeTags(cluster="c1", node=_copy("node-7"))
    tags = known.add_container((_copy("shop"), _copy("web-1"), _copy("app"), _copy("web"), None))
    for name in ("node", "namespace", "pod", "container", "workload"):
        assert tags[name] is sys.intern(_copy(tags[name])), name
    (held,) = known.containers
    assert held[1] is tags["pod"]


def test_after_churn_only_the_last_batchs_containers_are_kept_and_pods_start_over() -> None:
    known = NodeTags(cluster="c1", node="n1")
    old = [_sample(f"old-{i}") for i in range(3 * SLACK)]
    for sample in old:
        known.add_container((sample.namespace, sample.pod, sample.container, None, None))
        known.add_pod((sample.namespace, sample.pod, None, None))
    current = [_sample("new-0"), _sample("new-1")]
    kept = known.add_container(("shop", "new-0", "app", None, None))

    known.forget_gone(old, pods=len(old))  # as many series as held: nothing to forget
    assert len(known.containers) == 3 * SLACK + 1
    assert len(known.pods) == 3 * SLACK

    known.forget_gone(current, pods=2)
    assert known.containers == {("shop", "new-0", "app", None, None): kept}
    assert known.pods == {}

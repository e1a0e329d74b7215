"""Which container series belong to which pod, kept sorted, so a pod list is read without grouping or sorting.

``kubectl top pods -A`` on 30,000 pods needs every pod's containers, pods in (namespace, name) order and
containers by name. Grouping 60,000 containers by pod and sorting the pods on every request cost more than a
third of its time; the index is updated instead when a container series appears, moves or is evicted, which
is rare next to the requests and the points. It holds the values themselves (the store's series), not keys
to look them up by: hashing 60,000 four-part keys per request cost more than the rest of the walk.

Usage::

    index: PodIndex[Series] = PodIndex()
    index.put(("prod", "shop", "web-1"), "app", series)     # pod entity (cluster, namespace, pod), container
    index.pods("prod", namespace="shop")                   # [(("prod", "shop", "web-1"), [("app", series)])]
    index.remove(("prod", "shop", "web-1"), "app")

Not thread-safe: the store calls it under its own lock.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable
from typing import Any, Generic, TypeVar

V = TypeVar("V")

PodKey = tuple[str, ...]
"""A pod entity: (cluster, namespace, pod)."""


_Entry = tuple[PodKey, list[tuple[str, Any]]]


def _cluster(entry: _Entry) -> PodKey:
    return entry[0][:1]


def _namespace(entry: _Entry) -> PodKey:
    return entry[0][:2]


def _key(entry: _Entry) -> PodKey:
    return entry[0]


def _name(member: tuple[str, object]) -> str:
    return member[0]


class PodIndex(Generic[V]):
    """Pods in (cluster, namespace, pod) order, each with its containers' values sorted by container name."""

    __slots__ = ("_members", "_order", "generation")

    def __init__(self) -> None:
        self._members: dict[PodKey, list[tuple[str, V]]] = {}
        self._order: list[tuple[PodKey, list[tuple[str, V]]]] = []
        self.generation = 0
        """Counts pods added and removed: unchanged, the same pods are indexed."""

    def __len__(self) -> int:
        return len(self._order)

    def put(self, pod: PodKey, container: str, value: V) -> None:
        """Index ``container`` of ``pod`` with ``value``, replacing the value it had."""
        members = self._members.get(pod)
        if members is None:
            self._members[pod] = [(container, value)]
            insort(self._order, (pod, self._members[pod]), key=_key)
            self.generation += 1
            return
        at = bisect_left(members, container, key=_name)
        if at < len(members) and members[at][0] == container:
            members[at] = (container, value)
        else:
            members.insert(at, (container, value))

    def remove(self, pod: PodKey, container: str) -> None:
        """Forget ``container`` of ``pod``; the pod too when it was its last one. Unknown ones are ignored."""
        members = self._members.get(pod)
        if members is None:
            return
        at = bisect_left(members, container, key=_name)
        if at == len(members) or members[at][0] != container:
            return
        del members[at]
        if not members:
            del self._members[pod]
            del self._order[bisect_left(self._order, pod, key=_key)]
            self.generation += 1

    def get(self, pod: PodKey) -> list[tuple[str, V]] | None:
        """The containers of ``pod`` by name, or ``None`` when it is not indexed."""
        return self._members.get(pod)

    def pods(
        self, cluster: str, *, namespace: str | None = None, pod: str | None = None
    ) -> list[tuple[PodKey, list[tuple[str, V]]]]:
        """The pods of ``cluster`` (in ``namespace``, named ``pod``) with their containers, in order."""
        if namespace is not None and pod is not None:
            key = (cluster, namespace, pod)
            members = self._members.get(key)
            return [] if members is None else [(key, members)]
        if namespace is None:
            found = _matching(self._order, (cluster,), _cluster)
        else:
            found = _matching(self._order, (cluster, namespace), _namespace)
        if pod is not None:
            found = [entry for entry in found if entry[0][2] == pod]
        return found


def _matching(order: list[_Entry], prefix: PodKey, key_of: Callable[[_Entry], PodKey]) -> list[_Entry]:
    """The run of ``order`` whose ``key_of`` is ``prefix`` (a copy)."""
    return order[bisect_left(order, prefix, key=key_of) : bisect_right(order, prefix, key=key_of)]

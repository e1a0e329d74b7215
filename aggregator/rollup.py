"""Which fields each level may carry, summing fields up the levels, and the cross-node rollup window.

Container, pod and node points come from one node's batch. Namespace and cluster points span nodes, so
:class:`RollupWindow` keeps, per time bucket, what each node contributed (and the running sums) and emits
the bucket's namespace and cluster points once every node expected has reported, or once the bucket's
grace period has passed. A node that reports after that re-emits the bucket at once; a node's second
batch for an emitted bucket replaces its share and re-emits the bucket at the next tick. InfluxDB
overwrites a point with the same series and timestamp, so the last emission wins. Rollups are sums, never
means.

Usage::

    window = RollupWindow(cluster="prod", resolution_ns=10 * 10**9, grace_ns=5 * 10**9)
    points = window.contribute(bucket_ns, "node-1", NodeContribution(namespaces, node_fields), now_ns=now)
    points += window.tick(now_ns=now)   # buckets whose grace has passed

Not thread-safe: one owner calls it from one thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from aggregator import catalog, fieldcode
from aggregator.catalog import Level, Tag
from aggregator.points import Point

_TAG_CLUSTER = Tag.CLUSTER.value
_TAG_NAMESPACE = Tag.NAMESPACE.value
_NODE_COUNT = catalog.NODE_COUNT.name


@dataclass(frozen=True, slots=True)
class LevelSpec:
    """A level's measurement and the field names the catalog allows on it; the one gate every point passes."""

    level: Level
    measurement: str
    names: tuple[str, ...]
    """The allowed field names in catalog order (for loops)."""
    allowed: frozenset[str]
    """The same names as a set (for membership)."""

    def require(self, names: Iterable[str]) -> None:
        """``ValueError`` unless the catalog allows each of ``names`` on this level (for checks done once)."""
        stray = sorted(set(names) - self.allowed)
        if stray:
            raise ValueError(f"fields {stray} are not allowed on the {self.measurement} level by the catalog")

    def point(self, tags: dict[str, str], fields: dict[str, float], time_ns: int) -> Point:
        """A point of this level at ``time_ns`` (ns); ``ValueError`` for a field the level may not carry."""
        if not self.allowed.issuperset(fields):
            stray = sorted(set(fields) - self.allowed)
            raise ValueError(f"fields {stray} are not allowed on the {self.measurement} level by the catalog")
        return Point(self.measurement, tags, fields, time_ns)


def _spec(level: Level) -> LevelSpec:
    names = tuple(metric.name for metric in catalog.fields_for(level))
    return LevelSpec(level, level.value, names, frozenset(names))


LEVEL_SPECS: Mapping[Level, LevelSpec] = {level: _spec(level) for level in Level}
"""Every level's spec, computed once from the catalog."""


def add_fields(into: dict[str, float], fields: Mapping[str, float], names: tuple[str, ...]) -> None:
    """Add each of ``names`` present in ``fields`` into ``into`` (same units); absent stays absent."""
    # Walking the short list of wanted names beats walking every field and testing membership.
    value_of = fields.get
    for name in names:
        value = value_of(name)
        if value is not None:
            into[name] = into.get(name, 0.0) + value


class FieldSums:
    """Sums the ``names`` fields of many field dicts (same units), as :func:`add_fields` would, but faster.

    When every dict has every name (the steady state) the sums run through code compiled for ``names``
    (:func:`aggregator.fieldcode.summer`), adding left to right as ``add_fields`` does, so the results are
    identical. Otherwise it falls back to ``add_fields`` (absent stays absent).

    Usage::

        pod_sums = FieldSums(("cpu_usage_millicores", "memory_usage_bytes"))
        pod_sums.total([container_1_fields, container_2_fields])   # {"cpu_usage_millicores": ..., ...}
    """

    __slots__ = ("_sum", "names")

    def __init__(self, names: tuple[str, ...]) -> None:
        if not names:
            raise ValueError("FieldSums needs at least one name")
        self.names = names
        self._sum = fieldcode.summer(names)

    def total(self, dicts: Sequence[Mapping[str, float]]) -> dict[str, float]:
        """The sums of ``names`` over ``dicts``, each name present if any dict has it."""
        try:
            return self._sum(dicts)
        except KeyError:
            into: dict[str, float] = {}
            for fields in dicts:
                add_fields(into, fields, self.names)
            return into


@dataclass(frozen=True, slots=True)
class NodeContribution:
    """What one node's batch adds to a bucket's namespace and cluster points."""

    namespaces: Mapping[str, Mapping[str, float]]
    """Namespace name to the sums of its pods' fields on this node, ``pod_count`` included."""
    node: Mapping[str, float]
    """The node point's fields."""


class _Bucket:
    __slots__ = ("cluster", "emitted", "namespaces", "nodes", "reemit", "stale")

    def __init__(self) -> None:
        self.nodes: dict[str, NodeContribution] = {}
        # Running sums of the nodes' shares in arrival order, so a late node costs its own share only.
        self.namespaces: dict[str, dict[str, float]] = {}
        self.cluster: dict[str, float] = {}
        self.stale = False
        """A node's share was replaced: the sums are recomputed from every share at the next emission."""
        self.emitted = False
        self.reemit = False
        """Emitted, then changed by a replaced share: the next tick emits it again."""


class RollupWindow:
    """Cross-node rollups (namespace, cluster) per time bucket, emitted when complete or after grace."""

    def __init__(self, *, cluster: str, resolution_ns: int, grace_ns: int, keep_resolutions: int = 3) -> None:
        if resolution_ns <= 0 or grace_ns < 0 or keep_resolutions < 1:
            raise ValueError("resolution_ns must be > 0, grace_ns >= 0 and keep_resolutions >= 1")
        self._cluster = cluster
        self._resolution_ns = resolution_ns
        self._grace_ns = grace_ns
        # How long after its emission deadline a bucket is kept for late nodes, in ns.
        self._keep_ns = keep_resolutions * resolution_ns
        self._buckets: dict[int, _Bucket] = {}
        self._namespace = LEVEL_SPECS[Level.NAMESPACE]
        self._cluster_spec = LEVEL_SPECS[Level.CLUSTER]
        self._namespace_sums = FieldSums(self._namespace.names)
        # The node count is no node's field: it is set when the bucket is emitted.
        self._cluster_sums = FieldSums(
            tuple(name for name in self._cluster_spec.names if name != _NODE_COUNT)
        )
        self.too_late = 0
        """Contributions dropped because their bucket had already been released."""
        self.reemitted = 0
        """Buckets emitted again because a node reported after their first emission."""

    def __len__(self) -> int:
        """Buckets held (emitted ones included, until released)."""
        return len(self._buckets)

    def contribute(
        self, bucket_ns: int, node: str, contribution: NodeContribution, *, now_ns: int
    ) -> list[Point]:
        """Record ``node``'s part of the bucket starting at ``bucket_ns`` (ns); the points that became due."""
        if self._released(bucket_ns, now_ns):
            # Emitting this node alone would overwrite the bucket's complete rollups with a partial one.
            self.too_late += 1
            return []
        bucket = self._buckets.get(bucket_ns)
        if bucket is None:
            bucket = self._buckets[bucket_ns] = _Bucket()
        # A second batch of the same node in one bucket replaces the first, as its points do in InfluxDB.
        replaced = bucket.nodes.get(node)
        bucket.nodes[node] = contribution
        if replaced is not None:
            # Subtracting the old share would not give back the exact sums; recomputing every share costs
            # O(nodes), so it waits for the next emission (the next tick, when the bucket was out already).
            bucket.stale = True
            if bucket.emitted:
                bucket.reemit = True
                return []
        elif not bucket.stale:
            self._add(bucket, contribution)
        if bucket.emitted:
            self.reemitted += 1
            return self._emit(bucket_ns, bucket)
        previous = self._buckets.get(bucket_ns - self._resolution_ns)
        # Without a previous bucket (start, or a gap) nobody knows which nodes to expect: wait for grace.
        if previous is not None and previous.nodes.keys() <= bucket.nodes.keys():
            return self._emit(bucket_ns, bucket)
        return []

    def tick(self, now_ns: int) -> list[Point]:
        """Emit buckets whose end plus grace has passed by ``now_ns`` (ns), and release old ones."""
        points: list[Point] = []
        for bucket_ns in sorted(self._buckets):
            bucket = self._buckets[bucket_ns]
            if bucket.reemit:
                self.reemitted += 1
                points += self._emit(bucket_ns, bucket)
            elif not bucket.emitted and self._deadline(bucket_ns) <= now_ns:
                points += self._emit(bucket_ns, bucket)
            if self._released(bucket_ns, now_ns):
                del self._buckets[bucket_ns]
        return points

    def _deadline(self, bucket_ns: int) -> int:
        return bucket_ns + self._resolution_ns + self._grace_ns

    def _released(self, bucket_ns: int, now_ns: int) -> bool:
        return self._deadline(bucket_ns) + self._keep_ns <= now_ns

    def _add(self, bucket: _Bucket, contribution: NodeContribution) -> None:
        namespaces = bucket.namespaces
        for namespace, sums in contribution.namespaces.items():
            into = namespaces.get(namespace)
            namespaces[namespace] = self._namespace_sums.total((sums,) if into is None else (into, sums))
        cluster = bucket.cluster
        bucket.cluster = self._cluster_sums.total(
            (cluster, contribution.node) if cluster else (contribution.node,)
        )

    def _emit(self, bucket_ns: int, bucket: _Bucket) -> list[Point]:
        if bucket.stale:
            bucket.namespaces, bucket.cluster, bucket.stale = {}, {}, False
            for contribution in bucket.nodes.values():
                self._add(bucket, contribution)
        bucket.emitted = True
        bucket.reemit = False
        cluster = self._cluster
        # Copies: the points belong to whoever writes them, and the sums keep growing with late nodes.
        points = [
            self._namespace.point({_TAG_CLUSTER: cluster, _TAG_NAMESPACE: namespace}, dict(sums), bucket_ns)
            for namespace, sums in sorted(bucket.namespaces.items())
        ]
        cluster_fields = dict(bucket.cluster)
        cluster_fields[_NODE_COUNT] = float(len(bucket.nodes))
        points.append(self._cluster_spec.point({_TAG_CLUSTER: cluster}, cluster_fields, bucket_ns))
        return points

"""The query API's recent window: the last minutes of every served field of every series, held compactly.

A series is one level plus its identity tags, in ``catalog.TAGS_BY_LEVEL`` order. Each series has a ring of
``window / resolution`` slots: slot ``b % capacity`` holds time bucket ``b`` (bucket = ``time_ns //
resolution_ns``), and an ``array('i')`` records which bucket each slot holds, so a slot left over from an
earlier lap is never mistaken for a current one. Field columns are allocated lazily, only for fields a
series actually has, and start as a constant (a value and the bucket since which every bucket had it):
limits, requests, capacities and error rates that never change cost a few dozen bytes instead of a ring.
A column becomes an ``array('d')`` ring (NaN = no value) the first time its value changes or a bucket
lacks it. Only the fields the query API serves are kept.

Containers and pods are addressed by entity (identity without the node, as the Heapster and metrics.k8s.io
APIs name them); the rare entity that exists on two nodes at once (two Docker hosts running a container of
the same name) is a short chain of series, summed per bucket when read. A second point for a bucket
merges into it field by field, as InfluxDB merges points with the same series and time.

Series (and labels) not updated for ``eviction_seconds`` are dropped. Thread-safe: the ingest path writes
from the event loop while query routes read from the thread pool; one lock, held briefly.

Usage::

    store = RecentStore(resolution_seconds=10, window_seconds=900, eviction_seconds=900)
    store.add(points, now_ns=time.time_ns())
    store.add_labels(batch)
    store.points(Level.POD, ("prod", "shop", "web-1"), "cpu_usage_millicores", start_ns, end_ns)
"""

from __future__ import annotations

import itertools
import math
import sys
import threading
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypeAlias, TypeVar

from aggregator.catalog import TAGS_BY_LEVEL, Level, Tag
from aggregator.points import Point
from aggregator.query.heapster import SERVED_FIELDS
from collector.wire import Batch

_NS_PER_S = 1_000_000_000
_INT32_MAX = 2**31 - 1
_NAN = math.nan
_EMPTY_SLOT = -1

MAX_BUCKETS_PER_SERIES = 100_000
"""Refuse a window/resolution combination that would make every series a huge ring (e.g. 1 h at 10 ms)."""

Entity = tuple[str, ...]
"""A series' identity tag values in ``TAGS_BY_LEVEL`` order, without ``node`` for containers and pods."""

_NODE_IN_ENTITY = (Level.NODE,)
_K = TypeVar("_K")


class _Const(NamedTuple):
    """A column whose every bucket from ``since`` (relative bucket) on had ``value``."""

    value: float
    since: int


_Column: TypeAlias = "array[float] | _Const"


class _Series:
    """One series' ring; ``next`` chains series of the same entity on other nodes."""

    __slots__ = ("buckets", "columns", "newest", "next", "node")

    def __init__(self, node: str, width: int, empty_buckets: array[int]) -> None:
        self.node = node
        self.buckets = empty_buckets[:]
        self.columns: list[_Column | None] = [None] * width
        self.newest = -1
        self.next: _Series | None = None

    def chain(self) -> Iterator[_Series]:
        series: _Series | None = self
        while series is not None:
            yield series
            series = series.next


@dataclass(frozen=True, slots=True)
class _Shape:
    level: Level
    tags: tuple[str, ...]
    node_position: int | None
    """Where ``node`` sits in ``tags`` when it is not part of the entity (containers, pods)."""


@dataclass(frozen=True, slots=True)
class Latest:
    """The newest bucket (start, ns) at which an entity had every requested field, and their values."""

    time_ns: int
    values: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counts for the aggregator's own metrics (series now; the rest since start)."""

    series: int
    evicted: int
    points_ignored: int
    """Points outside the window or too far ahead of the clock, or missing an identity tag."""


class RecentStore:
    """The last ``window_seconds`` of the served fields of every series (see the module docstring)."""

    def __init__(
        self,
        *,
        resolution_seconds: float,
        window_seconds: float,
        eviction_seconds: float,
        fields: Sequence[str] = SERVED_FIELDS,
    ) -> None:
        if resolution_seconds <= 0 or window_seconds <= 0 or eviction_seconds <= 0:
            raise ValueError("resolution_seconds, window_seconds and eviction_seconds must be > 0")
        self._resolution_ns = max(1, round(resolution_seconds * _NS_PER_S))
        self._capacity = max(1, math.ceil(window_seconds * _NS_PER_S / self._resolution_ns))
        if self._capacity > MAX_BUCKETS_PER_SERIES:
            raise ValueError(
                f"a {window_seconds:g} s query window at {resolution_seconds:g} s resolution is "
                f"{self._capacity} buckets per series, more than {MAX_BUCKETS_PER_SERIES}: shorten "
                "KPULSE_AGGREGATOR_QUERY_WINDOW_SECONDS"
            )
        self._eviction_ns = round(eviction_seconds * _NS_PER_S)
        self._fields = tuple(fields)
        self._field_index = {name: index for index, name in enumerate(self._fields)}
        self._empty_buckets = array("i", [_EMPTY_SLOT]) * self._capacity
        self._nan_column = array("d", [_NAN]) * self._capacity
        self._shapes: dict[str, _Shape] = {}
        for level, tags in TAGS_BY_LEVEL.items():
            names = tuple(tag.value for tag in tags)
            position = None if level in _NODE_IN_ENTITY or Tag.NODE not in tags else tags.index(Tag.NODE)
            self._shapes[level.value] = _Shape(level, names, position)
        self._series: dict[Level, dict[Entity, _Series]] = {level: {} for level in Level}
        self._pod_labels: dict[tuple[str, str], tuple[Mapping[str, str], int]] = {}
        self._node_labels: dict[str, tuple[Mapping[str, str], int]] = {}
        # Buckets are stored relative to ``_base`` so they fit the 4-byte slots of ``array('i')``.
        self._base: int | None = None
        self._newest = -1
        self._oldest: int | None = None
        self._last_eviction_ns: int | None = None
        self._evicted = 0
        self._ignored = 0
        self._lock = threading.Lock()

    # -- facts ---------------------------------------------------------------------------------------

    @property
    def resolution_ns(self) -> int:
        """Bucket width in ns."""
        return self._resolution_ns

    @property
    def capacity(self) -> int:
        """Buckets held per series (the window divided by the resolution, rounded up)."""
        return self._capacity

    @property
    def fields(self) -> tuple[str, ...]:
        """The fields kept; anything else in a point is ignored."""
        return self._fields

    def stats(self) -> StoreStats:
        """Series held now, series evicted and points ignored since start."""
        with self._lock:
            held = sum(len(entities) for entities in self._series.values())
            return StoreStats(series=held, evicted=self._evicted, points_ignored=self._ignored)

    def span(self) -> tuple[int, int] | None:
        """(first, newest) bucket start in ns that the window covers; ``None`` before the first point.

        ``first`` is the later of the window's start and the first bucket ever stored: before it, only
        InfluxDB knows.
        """
        with self._lock:
            if self._base is None or self._oldest is None:
                return None
            first = max(self._oldest, self._newest - self._capacity + 1)
            return (first + self._base) * self._resolution_ns, (
                self._newest + self._base
            ) * self._resolution_ns

    # -- writing -------------------------------------------------------------------------------------

    def add(self, points: Iterable[Point], *, now_ns: int) -> None:
        """Keep the served fields of ``points``; ``now_ns`` (wall clock, ns) bounds the future and evicts.

        A point more than one window ahead of ``now_ns`` is ignored: a collector with a wrong clock must
        not push every other series out of the window.
        """
        resolution = self._resolution_ns
        horizon = now_ns // resolution + self._capacity
        with self._lock:
            for point in points:
                shape = self._shapes.get(point.measurement)
                if shape is None:
                    continue  # not a level the query API serves
                bucket = point.time_ns // resolution
                if bucket > horizon:
                    self._ignored += 1
                    continue
                if self._base is None:
                    # Room for a window of buckets older than the first one (late batches).
                    self._base = bucket - self._capacity
                relative = bucket - self._base
                if relative < 0 or relative > _INT32_MAX or relative <= self._newest - self._capacity:
                    self._ignored += 1
                    continue
                try:
                    values = tuple(point.tags[name] for name in shape.tags)
                except KeyError:
                    self._ignored += 1
                    continue
                self._write(self._series_for(shape, values), relative, point.fields)
                self._newest = max(self._newest, relative)
                if self._oldest is None or relative < self._oldest:
                    self._oldest = relative
            last = self._last_eviction_ns
            # A sweep walks every series, so it runs at most once per resolution.
            if last is None or now_ns - last >= resolution:
                self._last_eviction_ns = now_ns
                self._evict(now_ns)

    def add_labels(self, batch: Batch) -> None:
        """Remember the pod and node labels ``batch`` carries (for label selectors); never written out."""
        seen_ns = batch.scraped_at_ns
        with self._lock:
            for pod in batch.pods:
                if pod.labels is not None:
                    key = (sys.intern(pod.namespace), sys.intern(pod.pod))
                    self._pod_labels[key] = (
                        self._same_or_new(self._pod_labels.get(key), pod.labels),
                        seen_ns,
                    )
            node_sample = batch.node_sample
            if node_sample is not None and node_sample.labels is not None:
                node = sys.intern(batch.node)
                previous = self._node_labels.get(node)
                self._node_labels[node] = (self._same_or_new(previous, node_sample.labels), seen_ns)

    @staticmethod
    def _same_or_new(
        previous: tuple[Mapping[str, str], int] | None, labels: Mapping[str, str]
    ) -> Mapping[str, str]:
        # Labels rarely change: keeping the held dict when equal lets each batch's copy be freed at once.
        if previous is not None and previous[0] == labels:
            return previous[0]
        return {sys.intern(key): value for key, value in labels.items()}

    def evict(self, now_ns: int) -> int:
        """Drop series and labels not updated for the eviction time before ``now_ns``; how many series."""
        with self._lock:
            return self._evict(now_ns)

    def _evict(self, now_ns: int) -> int:
        if self._base is None:
            return 0
        # Newest relative bucket a series may have and still be too old to keep.
        cutoff = (now_ns - self._eviction_ns) // self._resolution_ns - self._base
        evicted = 0
        for entities in self._series.values():
            stale: list[tuple[Entity, _Series | None]] = []
            for entity, head in entities.items():
                if all(series.newest >= cutoff for series in head.chain()):
                    continue
                kept = [series for series in head.chain() if series.newest >= cutoff]
                evicted += sum(1 for _ in head.chain()) - len(kept)
                for earlier, later in itertools.pairwise(kept):
                    earlier.next = later
                if kept:
                    kept[-1].next = None
                stale.append((entity, kept[0] if kept else None))
            for entity, new_head in stale:
                if new_head is None:
                    del entities[entity]
                else:
                    entities[entity] = new_head
        _forget_older(self._pod_labels, now_ns - self._eviction_ns)
        _forget_older(self._node_labels, now_ns - self._eviction_ns)
        self._evicted += evicted
        return evicted

    def _series_for(self, shape: _Shape, values: tuple[str, ...]) -> _Series:
        position = shape.node_position
        if position is None:
            entity, node = values, ""
        else:
            entity, node = values[:position] + values[position + 1 :], values[position]
        entities = self._series[shape.level]
        head = entities.get(entity)
        series = head
        while series is not None and series.node != node:
            series = series.next
        if series is not None:
            return series
        # Interned so that thousands of series share one copy of each cluster, node and namespace name.
        series = _Series(sys.intern(node), len(self._fields), self._empty_buckets)
        if head is None:
            entities[tuple(sys.intern(value) for value in entity)] = series
        else:
            series.next = head.next
            head.next = series
        return series

    def _write(self, series: _Series, bucket: int, fields: Mapping[str, float]) -> None:
        slot = bucket % self._capacity
        fresh = series.buckets[slot] != bucket
        latest = bucket >= series.newest
        if fresh:
            series.buckets[slot] = bucket
        columns = series.columns
        index_of = self._field_index
        given: dict[int, float] = {}
        for name, value in fields.items():
            index = index_of.get(name)
            # InfluxDB cannot hold NaN or infinity either: such a value is no value.
            if index is not None and math.isfinite(value):
                given[index] = float(value)
        if fresh:
            # A new bucket in the slot: whatever the previous lap held there is not this bucket's.
            for index, column in enumerate(columns):
                if column is None or index in given:
                    continue
                if isinstance(column, _Const):
                    if bucket >= column.since:
                        columns[index] = self._materialise(series, column)
                        columns[index][slot] = _NAN  # type: ignore[index]  # just made an array
                else:
                    column[slot] = _NAN
        for index, value in given.items():
            column = columns[index]
            if column is None:
                # A constant may only start here if no later bucket exists (it would claim that one too).
                if latest:
                    columns[index] = _Const(value, bucket)
                    continue
                column = columns[index] = self._nan_column[:]
            elif isinstance(column, _Const):
                if value == column.value and bucket >= column.since:
                    continue
                column = columns[index] = self._materialise(series, column)
            column[slot] = value
        series.newest = max(series.newest, bucket)

    def _materialise(self, series: _Series, constant: _Const) -> array[float]:
        column = self._nan_column[:]
        value, since = constant
        for slot, bucket in enumerate(series.buckets):
            if bucket >= since:
                column[slot] = value
        return column

    # -- reading -------------------------------------------------------------------------------------

    def _window(self) -> tuple[int, int]:
        """The relative buckets a read may return: the last ``capacity`` up to the newest."""
        return max(0, self._newest - self._capacity + 1), self._newest

    def _value(self, series: _Series, index: int, bucket: int) -> float | None:
        slot = bucket % self._capacity
        if series.buckets[slot] != bucket:
            return None
        column = series.columns[index]
        if column is None:
            return None
        if isinstance(column, _Const):
            return column.value if bucket >= column.since else None
        value: float = column[slot]
        return None if math.isnan(value) else value

    def entities(self, level: Level) -> list[Entity]:
        """Every entity of ``level`` held now (any order)."""
        with self._lock:
            return list(self._series[level])

    def has(self, level: Level, entity: Entity) -> bool:
        """Whether ``entity`` of ``level`` is held."""
        with self._lock:
            return entity in self._series[level]

    def fields_present(self, level: Level, entity: Entity) -> list[str]:
        """The served fields ``entity`` has a value for somewhere in the window, in store order."""
        with self._lock:
            head = self._series[level].get(entity)
            if head is None or self._base is None:
                return []
            low, high = self._window()
            present: list[str] = []
            for index, name in enumerate(self._fields):
                if any(self._has_value(series, index, low, high) for series in head.chain()):
                    present.append(name)
            return present

    def _has_value(self, series: _Series, index: int, low: int, high: int) -> bool:
        if series.columns[index] is None:
            return False
        return any(self._value(series, index, bucket) is not None for bucket in range(low, high + 1))

    def points(
        self, level: Level, entity: Entity, field: str, start_ns: int, end_ns: int
    ) -> list[tuple[int, float]]:
        """``(bucket start ns, value)`` of ``field`` for buckets starting in ``[start_ns, end_ns]``, oldest
        first; an entity on several nodes is summed per bucket. Empty when unknown or outside the window."""
        index = self._field_index.get(field)
        if index is None:
            return []
        resolution = self._resolution_ns
        with self._lock:
            head = self._series[level].get(entity)
            if head is None or self._base is None:
                return []
            low, high = self._window()
            low = max(low, -(-start_ns // resolution) - self._base)
            high = min(high, end_ns // resolution - self._base)
            sums: dict[int, float] = {}
            for series in head.chain():
                if series.columns[index] is None:
                    continue
                for bucket in range(
                    max(low, series.newest - self._capacity + 1), min(high, series.newest) + 1
                ):
                    value = self._value(series, index, bucket)
                    if value is not None:
                        sums[bucket] = sums.get(bucket, 0.0) + value
            base = self._base
            return [((bucket + base) * resolution, sums[bucket]) for bucket in sorted(sums)]

    def latest(
        self,
        level: Level,
        fields: Sequence[str],
        *,
        not_before_ns: int,
        entities: Iterable[Entity] | None = None,
    ) -> dict[Entity, Latest]:
        """For each entity of ``level`` (or of ``entities``): its newest bucket at or after ``not_before_ns``
        with every one of ``fields``, and their values (summed over nodes that have that bucket)."""
        indices = [self._field_index[name] for name in fields]
        result: dict[Entity, Latest] = {}
        with self._lock:
            if self._base is None:
                return result
            held = self._series[level]
            low, _ = self._window()
            low = max(low, -(-not_before_ns // self._resolution_ns) - self._base)
            for entity in held if entities is None else entities:
                head = held.get(entity)
                if head is None:
                    continue
                found = self._latest_of(head, indices, low)
                if found is not None:
                    bucket, values = found
                    result[entity] = Latest((bucket + self._base) * self._resolution_ns, values)
        return result

    def _latest_of(self, head: _Series, indices: list[int], low: int) -> tuple[int, tuple[float, ...]] | None:
        best: int | None = None
        totals: list[float] = []
        for series in head.chain():
            for bucket in range(series.newest, max(low, series.newest - self._capacity + 1) - 1, -1):
                if best is not None and bucket < best:
                    break
                values = [self._value(series, index, bucket) for index in indices]
                if any(value is None for value in values):
                    continue
                complete = [value for value in values if value is not None]
                if best is None or bucket > best:
                    best, totals = bucket, complete
                else:
                    totals = [total + value for total, value in zip(totals, complete, strict=True)]
                break
        return None if best is None else (best, tuple(totals))

    def pod_labels(self, namespace: str, pod: str) -> Mapping[str, str]:
        """The labels last reported for the pod (empty when none were)."""
        with self._lock:
            entry = self._pod_labels.get((namespace, pod))
            return entry[0] if entry is not None else {}

    def node_labels(self, node: str) -> Mapping[str, str]:
        """The labels last reported for the node (empty when none were)."""
        with self._lock:
            entry = self._node_labels.get(node)
            return entry[0] if entry is not None else {}


def _forget_older(labels: dict[_K, tuple[Mapping[str, str], int]], cutoff_ns: int) -> None:
    for key in [key for key, (_, seen_ns) in labels.items() if seen_ns < cutoff_ns]:
        del labels[key]

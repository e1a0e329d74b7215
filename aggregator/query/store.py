"""The query API's recent window: the last minutes of every served field of every series, held compactly.

A series is one level plus its identity tags, in ``catalog.TAGS_BY_LEVEL`` order. Time bucket ``b`` (bucket =
``time_ns // resolution_ns``) lives in slot ``b % capacity`` of a ring of ``window / resolution`` slots; a
bit per slot says whether the series has the bucket the slot holds now (the one at most ``capacity - 1``
before the series' newest), so a slot left over from an earlier lap is never read as a current one.

Each served field a series has is held one of three ways, the same for all its buckets:

- a **constant**: a value and the bucket since which every bucket of the series had it. Limits, requests,
  capacities and error rates that never change cost a float, not a ring.
- a **ring column**, from the first time the value changes or a bucket lacks it (NaN = no value). All
  ring columns of a series share one ``bytearray``, a row of packed values per slot, so a point is written
  with one ``struct.pack_into``. Rates (``Kind.RATE`` in the catalog) are float32: their relative error of
  at most 2^-24 (6e-8) is far below the jitter of the scrape timestamps they are measured over (~1e-4 at
  10 s), and below what ``kubectl top`` (millicores) and Heapster (integers) print. Everything else
  (bytes, counts, limits) is float64, exact for every integer up to 2^53, so memory in bytes reads back
  exactly as InfluxDB holds it.
- absent.

Which way each field is held, and the point's field names in order, form a layout shared by every series
that holds its fields alike. A point whose names match its series' layout, whose constants are unchanged
and which opens a new bucket (the steady state) is written without looking at a field by name; anything
else (a new field, a constant that changed, a missing field, a late or second point for a bucket) goes
through a slower general path that may change the layout.

Each series also keeps the newest bucket at which it had every one of ``LATEST_FIELDS`` (what
metrics.k8s.io serves), with their values, so :meth:`RecentStore.latest` for those fields reads one entry
per series instead of searching the window.

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
    store.latest(Level.CONTAINER, LATEST_FIELDS, not_before_ns=now_ns - 30 * 10**9)
"""

from __future__ import annotations

import itertools
import math
import struct
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from types import MappingProxyType
from typing import TypeAlias, TypeVar

from aggregator import catalog
from aggregator.catalog import TAGS_BY_LEVEL, Kind, Level, Tag
from aggregator.points import Point
from aggregator.query.heapster import SERVED_FIELDS
from aggregator.query.pod_index import PodIndex
from collector.wire import Batch

_NS_PER_S = 1_000_000_000
_NAN = math.nan
_FLOAT32_MAX = 3.4028234663852886e38

MAX_BUCKETS_PER_SERIES = 100_000
"""Refuse a window/resolution combination that would make every series a huge ring (e.g. 1 h at 10 ms)."""

LATEST_FIELDS: tuple[str, ...] = (catalog.CPU_USAGE_MILLICORES.name, catalog.MEMORY_WORKING_SET_BYTES.name)
"""The fields whose newest complete bucket every series keeps at hand: metrics.k8s.io's CPU and memory."""

Entity = tuple[str, ...]
"""A series' identity tag values in ``TAGS_BY_LEVEL`` order, without ``node`` for containers and pods."""

_NODE_IN_ENTITY = (Level.NODE,)
_K = TypeVar("_K")

# How a series holds a field (see the module docstring).
_ABSENT = 0
_CONST = 1
_SINGLE = 2
"""A float32 ring column."""
_DOUBLE = 3
"""A float64 ring column."""
_RINGS = (_SINGLE, _DOUBLE)
_CODES = {_SINGLE: "f", _DOUBLE: "d"}

_LAYOUTS_KEPT = 4096
"""Distinct layouts remembered for sharing; beyond that the cache starts over (series keep theirs)."""

_V = TypeVar("_V")

_BY_TAGS_SLACK = 1024
"""Entries a level's tags index may hold beyond twice its entities before it starts over."""


def _getter(names: Sequence[str]) -> Callable[[Mapping[str, _V]], tuple[_V, ...]]:
    """A function returning the values of ``names`` from a mapping, always as a tuple (``KeyError`` if one is
    missing): ``itemgetter`` itself for two or more, which returns a bare value for one."""
    if len(names) >= 2:
        getter: Callable[[Mapping[str, _V]], tuple[_V, ...]] = itemgetter(*names)
        return getter
    if len(names) == 1:
        name = names[0]
        return lambda values: (values[name],)
    return lambda values: ()


class _Layout:
    """How a series holds each served field, and how its points are unpacked (shared, never changed)."""

    __slots__ = (
        "const_position",
        "const_values",
        "consts",
        "keys",
        "kinds",
        "latest_codec",
        "latest_in_row",
        "latest_values",
        "nan_row",
        "readers",
        "ring_values",
        "rings",
        "row",
        "size",
    )

    def __init__(
        self,
        kinds: tuple[int, ...],
        keys: tuple[str, ...] | None,
        names: tuple[str, ...],
        latest: tuple[int, ...] | None,
    ) -> None:
        self.kinds = kinds
        self.keys = keys
        """A point's field names, in order, that the fast path takes; ``None``: none does."""
        self.rings = tuple(index for index, kind in enumerate(kinds) if kind in _RINGS)
        self.consts = tuple(index for index, kind in enumerate(kinds) if kind == _CONST)
        self.row = struct.Struct("<" + "".join(_CODES[kinds[index]] for index in self.rings))
        self.size = self.row.size
        self.nan_row = self.row.pack(*[_NAN] * len(self.rings))
        self.ring_values = _getter([names[index] for index in self.rings])
        self.const_values = _getter([names[index] for index in self.consts])
        self.const_position = {index: position for position, index in enumerate(self.consts)}
        self.readers: dict[int, tuple[int, struct.Struct]] = {}
        offset = 0
        for index in self.rings:
            codec = struct.Struct("<" + _CODES[kinds[index]])
            self.readers[index] = (offset, codec)
            offset += codec.size
        self.latest_values: Callable[[Mapping[str, float]], tuple[float, ...]] | None = None
        self.latest_codec: struct.Struct | None = None
        self.latest_in_row: struct.Struct | None = None
        """Reads the latest fields straight from a row (pad bytes over the other columns) when every one of
        them is a ring column: the values exactly as the ring gives them back, in one call."""
        if latest is not None and all(kinds[index] in _RINGS for index in latest):
            self.latest_in_row = _columns_reader([self.readers[index] for index in latest])
        if latest is not None and all(kinds[index] != _ABSENT for index in latest):
            self.latest_values = _getter([names[index] for index in latest])
            if any(kinds[index] == _SINGLE for index in latest):
                # The index must give exactly what the ring gives back: float32-rounded.
                self.latest_codec = struct.Struct(
                    "<" + "".join("f" if kinds[index] == _SINGLE else "d" for index in latest)
                )


def _columns_reader(columns: Sequence[tuple[int, struct.Struct]]) -> struct.Struct | None:
    """A struct unpacking ``columns`` (offset, codec) of a row in the given order; ``None`` unless they are
    in ascending offset order (struct formats only move forward)."""
    parts = ["<"]
    position = 0
    for offset, codec in columns:
        if offset < position:
            return None
        parts.append("x" * (offset - position) + codec.format.lstrip("<"))
        position = offset + codec.size
    return struct.Struct("".join(parts))


Latest: TypeAlias = tuple[int, tuple[float, ...]]
"""``(time_ns, values)``: the newest bucket (start, ns) at which an entity had every requested field, and
their values. A plain tuple, not a named one: Python's garbage collector stops tracking plain tuples of
numbers, so the one every series holds adds nothing to its full collections."""

ContainerLatest: TypeAlias = tuple[str, Latest]
"""``(container name, latest)``: one container's entry in a :data:`PodLatest`."""
PodLatest: TypeAlias = tuple[str, str, int, tuple[ContainerLatest, ...]]
"""``(namespace, pod, time_ns, containers)``: a pod's newest bucket (start, ns) and the containers that
have it, sorted by name (see :meth:`RecentStore.latest_by_pod`)."""


class _Series:
    """One series' window; ``next`` chains series of the same entity on other nodes."""

    __slots__ = ("consts", "latest", "layout", "newest", "next", "node", "present", "rows", "since", "tags")

    def __init__(self, node: str, layout: _Layout) -> None:
        self.node = node
        self.layout = layout
        self.rows = bytearray()
        self.consts: tuple[float, ...] = ()
        self.since: tuple[int, ...] = ()
        """The relative bucket from which each constant holds."""
        self.present = 0
        """Bit ``slot`` set: the series has the bucket that slot holds now."""
        self.newest = -1
        self.latest: Latest | None = None
        """The newest bucket with every one of ``LATEST_FIELDS`` (time in ns), and their values."""
        self.next: _Series | None = None
        self.tags: Mapping[str, str] | None = None
        """The tags object the series was last found by (``RecentStore.add`` looks series up by it)."""

    def chain(self) -> Iterator[_Series]:
        series: _Series | None = self
        while series is not None:
            yield series
            series = series.next


@dataclass(frozen=True, slots=True)
class _Shape:
    level: Level
    entity: Callable[[Mapping[str, str]], Entity]
    """The entity's tag values from a point's tags (``KeyError`` when one is missing)."""
    node_tag: str | None
    """``node`` when it is a tag of the level but not part of the entity (containers, pods)."""
    by_tags: dict[int, _Series]
    """Containers and pods: series by the ``id`` of the tags object they were last found by (the pipeline
    hands the same dict for a series' successive points); empty for the other levels, whose points come
    with new tags every time."""


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counts for the aggregator's own metrics (series now; the rest since start)."""

    series: int
    evicted: int
    points_ignored: int
    """Points outside the window or too far ahead of the clock, or missing an identity tag."""


def _no_entity(tags: Mapping[str, str]) -> Entity:
    """Stands in for a shape's entity getter before ``add`` has met a level (never called)."""
    raise KeyError("no level")


def _shape(level: Level) -> _Shape:
    tags = TAGS_BY_LEVEL[level]
    node_tag = None if level in _NODE_IN_ENTITY or Tag.NODE not in tags else Tag.NODE.value
    names = tuple(tag.value for tag in tags if tag.value != node_tag)
    return _Shape(level, _getter(names), node_tag, {})


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
        self._rates = tuple(
            (metric := catalog.BY_NAME.get(name)) is not None and metric.kind is Kind.RATE
            for name in self._fields
        )
        self._latest_indices: tuple[int, ...] | None = None
        if all(name in self._field_index for name in LATEST_FIELDS):
            self._latest_indices = tuple(self._field_index[name] for name in LATEST_FIELDS)
        self._layouts: dict[tuple[tuple[int, ...], tuple[str, ...] | None], _Layout] = {}
        self._empty_layout = self._layout((_ABSENT,) * len(self._fields), None)
        self._shapes = {level.value: _shape(level) for level in TAGS_BY_LEVEL}
        self._series: dict[Level, dict[Entity, _Series]] = {level: {} for level in Level}
        self._containers = self._series[Level.CONTAINER]
        # Container series by pod, for metrics.k8s.io's pod lists (containers are entities of 4 names).
        self._pods: PodIndex[_Series] = PodIndex()
        # Labels and when they were last reported (ns), apart so that a copy of all labels is one call.
        self._pod_labels: dict[tuple[str, str], Mapping[str, str]] = {}
        self._pod_labels_seen: dict[tuple[str, str], int] = {}
        self._pod_labels_generation = 0
        self._node_labels: dict[str, Mapping[str, str]] = {}
        self._node_labels_seen: dict[str, int] = {}
        # Buckets are stored relative to ``_base`` (small numbers, shared by every series of a batch).
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
        not push every other series out of the window. A container's or pod's series is found again by the
        very tags object its last point had, without reading it: a point's tags must not change once added
        (the pipeline's never do; see ``aggregator.tags``).
        """
        resolution = self._resolution_ns
        capacity = self._capacity
        horizon = now_ns // resolution + capacity
        shapes = self._shapes
        isfinite = math.isfinite
        with self._lock:
            # A batch's points share measurements and one time: both are looked at once per run.
            measurement: str | None = None
            shape: _Shape | None = None
            entity_of: Callable[[Mapping[str, str]], Entity] = _no_entity
            node_tag: str | None = None
            by_tags: dict[int, _Series] = {}
            entities: dict[Entity, _Series] = {}
            time_ns: int | None = None
            relative = -1
            bucket_ns = 0
            noted = False
            for point_measurement, tags, fields, point_time_ns in points:
                if point_measurement != measurement:
                    measurement = point_measurement
                    shape = shapes.get(measurement)
                    if shape is not None:
                        entities = self._series[shape.level]
                        entity_of, node_tag, by_tags = shape.entity, shape.node_tag, shape.by_tags
                if shape is None:
                    continue  # not a level the query API serves
                if point_time_ns != time_ns:
                    time_ns = point_time_ns
                    relative = self._accept(time_ns // resolution, horizon)
                    bucket_ns = time_ns - time_ns % resolution
                    noted = False
                if relative < 0:
                    self._ignored += 1
                    continue
                # The same tags object as last time finds the series without reading its tags; the series
                # holds that object, so its id cannot have been reused by another.
                series = by_tags.get(id(tags))
                if series is None or series.tags is not tags:
                    try:
                        entity = entity_of(tags)
                        node = "" if node_tag is None else tags[node_tag]
                    except KeyError:
                        self._ignored += 1
                        continue
                    series = entities.get(entity)
                    if series is None or series.node != node:
                        series = self._series_for(entities, entity, node)
                    if node_tag is not None:
                        series.tags = tags
                        by_tags[id(tags)] = series
                if not noted:
                    self._note(relative)
                    noted = True
                layout = series.layout
                # The steady state: same names, same constants, a new bucket, every changing value finite.
                if (
                    relative > series.newest
                    and tuple(fields) == layout.keys
                    and layout.const_values(fields) == series.consts
                ):
                    values = layout.ring_values(fields)
                    # A sum is finite only if every term is (or it overflowed: the general path sorts it).
                    if isfinite(sum(values)):
                        slot = relative % capacity
                        try:
                            if layout.size:
                                layout.row.pack_into(series.rows, slot * layout.size, *values)
                        except OverflowError:  # a rate beyond float32: the general path makes it float64
                            self._write(series, relative, bucket_ns, fields)
                            continue
                        newest = series.newest
                        present = series.present
                        if relative - newest != 1:
                            present = self._skip(present, newest, relative)
                        series.present = present | 1 << slot
                        series.newest = relative
                        in_row = layout.latest_in_row
                        if in_row is not None:
                            series.latest = (bucket_ns, in_row.unpack_from(series.rows, slot * layout.size))
                        elif (getter := layout.latest_values) is not None:
                            latest = getter(fields)
                            codec = layout.latest_codec
                            if codec is not None:
                                latest = codec.unpack(codec.pack(*latest))
                            series.latest = (bucket_ns, latest)
                        continue
                self._write(series, relative, bucket_ns, fields)
            last = self._last_eviction_ns
            # A sweep walks every series, so it runs at most once per resolution.
            if last is None or now_ns - last >= resolution:
                self._last_eviction_ns = now_ns
                self._evict(now_ns)

    def _accept(self, bucket: int, horizon: int) -> int:
        """``bucket`` relative to the base if the window takes it, else -1."""
        if bucket > horizon:
            return -1
        if self._base is None:
            # Room for a window of buckets older than the first one (late batches).
            self._base = bucket - self._capacity
        relative = bucket - self._base
        if relative < 0 or relative <= self._newest - self._capacity:
            return -1
        return relative

    def _note(self, relative: int) -> None:
        """A point was taken for ``relative``: the window's newest and oldest buckets follow."""
        self._newest = max(self._newest, relative)
        if self._oldest is None or relative < self._oldest:
            self._oldest = relative

    def _skip(self, present: int, newest: int, bucket: int) -> int:
        """``present`` once the series moves from ``newest`` to ``bucket``, skipping the buckets between."""
        capacity = self._capacity
        if bucket - newest > capacity:
            return 0
        for skipped in range(newest + 1, bucket):
            present &= ~(1 << skipped % capacity)
        return present

    def add_labels(self, batch: Batch) -> None:
        """Remember the pod and node labels ``batch`` carries (for label selectors); never written out."""
        seen_ns = batch.scraped_at_ns
        with self._lock:
            pod_labels, pod_seen = self._pod_labels, self._pod_labels_seen
            for pod in batch.pods:
                labels = pod.labels
                if labels is not None:
                    key = (pod.namespace, pod.pod)
                    held = pod_labels.get(key)
                    # Labels rarely change: then the held key and dict stay, and only the time moves on.
                    if held is None or held != labels:
                        key = (sys.intern(key[0]), sys.intern(key[1]))
                        pod_labels[key] = _same_or_new(held, labels)
                        self._pod_labels_generation += 1
                    pod_seen[key] = seen_ns
            node_sample = batch.node_sample
            if node_sample is not None and node_sample.labels is not None:
                node = sys.intern(batch.node)
                self._node_labels[node] = _same_or_new(self._node_labels.get(node), node_sample.labels)
                self._node_labels_seen[node] = seen_ns

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
                if head.newest >= cutoff and head.next is None:
                    continue
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
                    if entities is self._containers:
                        self._pods.remove(entity[:3], entity[3])
                else:
                    entities[entity] = new_head
                    if entities is self._containers:
                        self._pods.put(entity[:3], entity[3], new_head)
        for shape in self._shapes.values():
            # An evicted series must not be found by its tags; entries for tags no longer used pile up.
            if evicted or len(shape.by_tags) > 2 * len(self._series[shape.level]) + _BY_TAGS_SLACK:
                shape.by_tags.clear()
        if _forget_older(self._pod_labels, self._pod_labels_seen, now_ns - self._eviction_ns):
            self._pod_labels_generation += 1
        _forget_older(self._node_labels, self._node_labels_seen, now_ns - self._eviction_ns)
        self._evicted += evicted
        return evicted

    def _series_for(self, entities: dict[Entity, _Series], entity: Entity, node: str) -> _Series:
        head = entities.get(entity)
        series = head
        while series is not None and series.node != node:
            series = series.next
        if series is not None:
            return series
        # Interned so that thousands of series share one copy of each cluster, node and namespace name.
        series = _Series(sys.intern(node), self._empty_layout)
        if head is None:
            interned = tuple(sys.intern(value) for value in entity)
            entities[interned] = series
            if entities is self._containers:
                self._pods.put(interned[:3], interned[3], series)
        else:
            series.next = head.next
            head.next = series
        return series

    def _layout(self, kinds: tuple[int, ...], keys: tuple[str, ...] | None) -> _Layout:
        layout = self._layouts.get((kinds, keys))
        if layout is None:
            if len(self._layouts) >= _LAYOUTS_KEPT:
                self._layouts.clear()
            layout = _Layout(kinds, keys, self._fields, self._latest_indices)
            self._layouts[kinds, keys] = layout
        return layout

    def _ring_kind(self, index: int, *values: float) -> int:
        """Float32 for a rate whose values fit it, float64 otherwise."""
        if self._rates[index] and all(not abs(value) > _FLOAT32_MAX for value in values):
            return _SINGLE
        return _DOUBLE

    def _write(self, series: _Series, bucket: int, bucket_ns: int, fields: Mapping[str, float]) -> None:
        """The general path: merge ``fields`` into ``bucket`` (relative) of ``series``, changing its layout
        as needed (a new field, a constant that changed or went missing, a rate too big for float32)."""
        index_of = self._field_index
        given: dict[int, float] = {}
        served = 0
        for name, value in fields.items():
            index = index_of.get(name)
            if index is not None:
                served += 1
                # InfluxDB cannot hold NaN or infinity either: such a value is no value.
                if math.isfinite(value):
                    given[index] = float(value)
        capacity = self._capacity
        slot = bucket % capacity
        newest = series.newest
        fresh = bucket > newest or not series.present >> slot & 1
        # A constant may only start here if no later bucket exists (it would claim that one too).
        may_start = bucket >= newest
        if bucket > newest:
            series.present = self._skip(series.present, newest, bucket)
            series.newest = bucket
        series.present |= 1 << slot

        layout = series.layout
        kinds = list(layout.kinds)
        started: dict[int, tuple[float, int]] = {}
        for index, value in given.items():
            kind = kinds[index]
            if kind == _CONST:
                position = layout.const_position[index]
                if value != series.consts[position] or bucket < series.since[position]:
                    kinds[index] = self._ring_kind(index, series.consts[position], value)
            elif kind == _SINGLE:
                if abs(value) > _FLOAT32_MAX:
                    kinds[index] = _DOUBLE
            elif kind == _ABSENT:
                if may_start:
                    kinds[index] = _CONST
                    started[index] = (value, bucket)
                else:
                    kinds[index] = self._ring_kind(index, value)
        if fresh:
            # A new bucket: a constant it lacks no longer holds from its ``since`` on.
            for position, index in enumerate(layout.consts):
                if index not in given and series.since[position] <= bucket:
                    kinds[index] = self._ring_kind(index, series.consts[position])
        if tuple(kinds) != layout.kinds:
            self._relayout(series, tuple(kinds), started)
            layout = series.layout

        if fresh and layout.size:
            # Whatever the previous lap held in this slot is not this bucket's.
            start = slot * layout.size
            series.rows[start : start + layout.size] = layout.nan_row
        for index, value in given.items():
            reader = layout.readers.get(index)
            if reader is not None:
                offset, codec = reader
                codec.pack_into(series.rows, slot * layout.size + offset, value)

        # The fast path may take the next point if it has exactly the fields held now, all finite.
        held = len(layout.rings) + len(layout.consts)
        keys = tuple(fields) if len(given) == served == held else None
        if keys != layout.keys:
            series.layout = self._layout(layout.kinds, keys)

        indices = self._latest_indices
        latest = series.latest
        if indices is not None and (latest is None or bucket_ns >= latest[0]):
            values = [self._value(series, index, bucket) for index in indices]
            complete = [value for value in values if value is not None]
            if len(complete) == len(values):
                series.latest = (bucket_ns, tuple(complete))

    def _relayout(
        self, series: _Series, kinds: tuple[int, ...], started: Mapping[int, tuple[float, int]]
    ) -> None:
        """Hold ``series`` as ``kinds`` say, keeping its values; ``started``: new constants (value, since)."""
        old = series.layout
        capacity = self._capacity
        rows = list(old.row.iter_unpack(series.rows)) if old.size else []
        columns = {index: [row[position] for row in rows] for position, index in enumerate(old.rings)}
        constants = dict(zip(old.consts, zip(series.consts, series.since, strict=True), strict=True))
        constants.update(started)
        for index, kind in enumerate(kinds):
            if kind in _RINGS and index not in columns:
                if index in constants:
                    columns[index] = self._materialise(series, *constants[index])
                else:
                    columns[index] = [_NAN] * capacity
        layout = self._layout(kinds, None)
        if layout.size:
            pack = layout.row.pack
            ordered = [columns[index] for index in layout.rings]
            series.rows = bytearray(b"".join(pack(*row) for row in zip(*ordered, strict=True)))
        else:
            series.rows = bytearray()
        series.consts = tuple(constants[index][0] for index in layout.consts)
        series.since = tuple(constants[index][1] for index in layout.consts)
        series.layout = layout

    def _materialise(self, series: _Series, value: float, since: int) -> list[float]:
        """A constant as a ring column: ``value`` in every slot whose bucket the series has from ``since``."""
        capacity = self._capacity
        newest = series.newest
        present = series.present
        column = [_NAN] * capacity
        for slot in range(capacity):
            bucket = newest - (newest - slot) % capacity
            if present >> slot & 1 and bucket >= since:
                column[slot] = value
        return column

    # -- reading -------------------------------------------------------------------------------------

    def _window(self) -> tuple[int, int]:
        """The relative buckets a read may return: the last ``capacity`` up to the newest."""
        return max(0, self._newest - self._capacity + 1), self._newest

    def _value(self, series: _Series, index: int, bucket: int) -> float | None:
        newest = series.newest
        capacity = self._capacity
        if not newest - capacity < bucket <= newest:
            return None
        slot = bucket % capacity
        if not series.present >> slot & 1:
            return None
        layout = series.layout
        kind = layout.kinds[index]
        if kind == _ABSENT:
            return None
        if kind == _CONST:
            position = layout.const_position[index]
            return series.consts[position] if bucket >= series.since[position] else None
        offset, codec = layout.readers[index]
        value: float = codec.unpack_from(series.rows, slot * layout.size + offset)[0]
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
        if series.layout.kinds[index] == _ABSENT:
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
                if series.layout.kinds[index] == _ABSENT:
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
        with every one of ``fields``, and their values (summed over nodes that have that bucket).

        Reads one entry per series for ``LATEST_FIELDS``; other fields search the window."""
        indices = tuple(self._field_index[name] for name in fields)
        indexed = indices == self._latest_indices
        result: dict[Entity, Latest] = {}
        with self._lock:
            if self._base is None:
                return result
            held = self._series[level]
            low = self._first_bucket(not_before_ns)
            low_ns = (low + self._base) * self._resolution_ns
            if entities is None:
                pairs: Iterable[tuple[Entity, _Series]] = held.items()
            else:
                pairs = [(entity, head) for entity in entities if (head := held.get(entity)) is not None]
            if indexed:
                for entity, head in pairs:
                    if head.next is None:
                        found = head.latest
                        if found is not None and found[0] >= low_ns:
                            result[entity] = found
                    else:
                        summed = self._latest_indexed(head, low_ns)
                        if summed is not None:
                            result[entity] = summed
            else:
                for entity, head in pairs:
                    scanned = self._latest_scanned(head, indices, low)
                    if scanned is not None:
                        bucket, values = scanned
                        result[entity] = ((bucket + self._base) * self._resolution_ns, values)
        return result

    def latest_by_pod(
        self, cluster: str, *, not_before_ns: int, namespace: str | None = None, pod: str | None = None
    ) -> list[PodLatest]:
        """Each pod of ``cluster`` (in ``namespace``, named ``pod``) with a container whose newest complete
        ``LATEST_FIELDS`` bucket is at or after ``not_before_ns``: the pod's newest such bucket and the
        containers that have it, pods by (namespace, name) and containers by name.

        A container whose newest bucket is older than its pod's has stopped and is left out, as
        metrics-server leaves it out. Reads the index kept on write: no grouping, no sorting.
        """
        result: list[PodLatest] = []
        with self._lock:
            low_ns = self._low_ns(not_before_ns)
            if low_ns is None:
                return result
            latest = self._pod_latest
            for key, members in self._pods.pods(cluster, namespace=namespace, pod=pod):
                found = latest(key, members, low_ns)
                if found is not None:
                    result.append(found)
        return result

    def latest_of_pods(
        self, cluster: str, pods: Iterable[tuple[str, str]], *, not_before_ns: int
    ) -> dict[tuple[str, str], PodLatest | None]:
        """:meth:`latest_by_pod` for each ``(namespace, pod)`` of ``pods`` in ``cluster``, under one lock;
        ``None`` for a pod without a fresh container (or not held)."""
        result: dict[tuple[str, str], PodLatest | None] = {}
        with self._lock:
            low_ns = self._low_ns(not_before_ns)
            get = self._pods.get
            for namespace, pod in pods:
                key = (cluster, namespace, pod)
                members = get(key)
                result[namespace, pod] = (
                    None if members is None or low_ns is None else self._pod_latest(key, members, low_ns)
                )
        return result

    @property
    def pod_generation(self) -> int:
        """Changes whenever a pod is added to or evicted from the store (see :meth:`pod_keys`)."""
        with self._lock:
            return self._pods.generation

    def pod_keys(self, cluster: str) -> tuple[int, list[tuple[str, str]]]:
        """The :attr:`pod_generation` and every held ``(namespace, pod)`` of ``cluster``, in order."""
        with self._lock:
            return self._pods.generation, [(key[1], key[2]) for key, _ in self._pods.pods(cluster)]

    def fresh_since_ns(self, not_before_ns: int) -> int | None:
        """The oldest bucket start (ns) :meth:`latest_by_pod` accepts for ``not_before_ns``; ``None`` when
        the store holds nothing (or does not keep ``LATEST_FIELDS``)."""
        with self._lock:
            return self._low_ns(not_before_ns)

    def _low_ns(self, not_before_ns: int) -> int | None:
        """The oldest bucket start (ns) a latest value can have: in the window, not before the given time."""
        if self._base is None or self._latest_indices is None:
            return None
        return (self._first_bucket(not_before_ns) + self._base) * self._resolution_ns

    def _first_bucket(self, not_before_ns: int) -> int:
        """The oldest relative bucket a latest value can be in: in the window, not before the given time
        (the store must hold something)."""
        assert self._base is not None
        low, _ = self._window()
        return max(low, -(-not_before_ns // self._resolution_ns) - self._base)

    def _pod_latest(self, key: Entity, members: list[tuple[str, _Series]], low_ns: int) -> PodLatest | None:
        if len(members) == 1:  # the common case, written out: it is most of a 30,000-pod list
            [(name, head)] = members
            found = head.latest if head.next is None else self._latest_indexed(head, low_ns)
            if found is None or found[0] < low_ns:
                return None
            return (key[1], key[2], found[0], ((name, found),))
        newest = low_ns - 1
        current: list[ContainerLatest] = []
        for name, head in members:
            found = head.latest if head.next is None else self._latest_indexed(head, low_ns)
            if found is None or found[0] < newest:
                continue
            if found[0] > newest:
                newest = found[0]
                current = [(name, found)]
            else:
                current.append((name, found))
        return (key[1], key[2], newest, tuple(current)) if current else None

    @staticmethod
    def _latest_indexed(head: _Series, low_ns: int) -> Latest | None:
        """An entity on several nodes: the newest indexed bucket, summed over the series that have it."""
        best: Latest | None = None
        for series in head.chain():
            found = series.latest
            if found is None or found[0] < low_ns:
                continue
            if best is None or found[0] > best[0]:
                best = found
            elif found[0] == best[0]:
                best = (best[0], tuple(a + b for a, b in zip(best[1], found[1], strict=True)))
        return best

    def _latest_scanned(
        self, head: _Series, indices: tuple[int, ...], low: int
    ) -> tuple[int, tuple[float, ...]] | None:
        best: int | None = None
        totals: list[float] = []
        for series in head.chain():
            for bucket in range(series.newest, max(low, series.newest - self._capacity + 1) - 1, -1):
                if best is not None and bucket < best:
                    break
                values = [self._value(series, index, bucket) for index in indices]
                complete = [value for value in values if value is not None]
                if len(complete) < len(values):
                    continue
                if best is None or bucket > best:
                    best, totals = bucket, complete
                else:
                    totals = [total + value for total, value in zip(totals, complete, strict=True)]
                break
        return None if best is None else (best, tuple(totals))

    def pod_labels(self, namespace: str, pod: str) -> Mapping[str, str]:
        """The labels last reported for the pod (empty when none were)."""
        with self._lock:
            return self._pod_labels.get((namespace, pod), _NO_LABELS)

    @property
    def pod_labels_generation(self) -> int:
        """Changes whenever a pod's labels change, appear or are forgotten."""
        with self._lock:
            return self._pod_labels_generation

    def all_pod_labels(self) -> dict[tuple[str, str], Mapping[str, str]]:
        """``(namespace, pod)`` -> the labels last reported, for every pod that reported some (a copy)."""
        with self._lock:
            return self._pod_labels.copy()

    def node_labels(self, node: str) -> Mapping[str, str]:
        """The labels last reported for the node (empty when none were)."""
        with self._lock:
            return self._node_labels.get(node, _NO_LABELS)


_NO_LABELS: Mapping[str, str] = MappingProxyType({})


def _same_or_new(previous: Mapping[str, str] | None, labels: Mapping[str, str]) -> Mapping[str, str]:
    # Labels rarely change: keeping the held dict when equal lets each batch's copy be freed at once.
    if previous is not None and previous == labels:
        return previous
    return {sys.intern(key): value for key, value in labels.items()}


def _forget_older(labels: dict[_K, Mapping[str, str]], seen: dict[_K, int], cutoff_ns: int) -> int:
    """Drop the labels last seen before ``cutoff_ns``; how many."""
    forgotten = [key for key, seen_ns in seen.items() if seen_ns < cutoff_ns]
    for key in forgotten:
        del labels[key], seen[key]
    return len(forgotten)

"""Turning cumulative counters into per-second rates: one compact baseline per series, and when to give none.

A series is one thing whose counters only go up while it lives: a container incarnation, a pod's network
namespace, a node since boot. The tracker keeps the previous sample of each series (its own read time, an
identity marker and its counters in a fixed order) and hands back the counter deltas and elapsed time of
the next sample, or ``None`` with the reason counted when no honest rate exists.

Usage::

    counts = SuppressionCounts()
    tracker: RateTracker[tuple[str, str]] = RateTracker(counts)
    tracker.update(("n1", "abc"), 10_000_000_000, started_at, (100, 7), seen_ns=now)   # None (first)
    delta = tracker.update(("n1", "abc"), 20_000_000_000, started_at, (600, 7), seen_ns=now)
    delta.counters[0] * 1e9 / delta.elapsed_ns                                         # 50.0 per second

Not thread-safe: one owner calls it from one thread.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable
from dataclasses import dataclass, fields
from functools import partial
from operator import sub
from typing import Generic, NamedTuple, TypeVar

from aggregator import fieldcode

K = TypeVar("K", bound=Hashable)

Counters = tuple[int | None, ...]
"""A sample's counters in the series' fixed order; ``None`` where the source did not report one.

A sample may also leave out trailing counters it never has (a container without its own network): they
count as absent, which keeps the common narrow case cheap.
"""


class Suppression(enum.StrEnum):
    """Why a sample produced no rate; the values label the aggregator's ``/metrics`` counter."""

    FIRST = "first"
    """No earlier sample of the series to compare with."""
    RESTART = "restart"
    """The identity marker changed (container restarted, node rebooted): counters started again."""
    RESET = "reset"
    """A counter went backwards without a marker change: the source reset it."""
    OUT_OF_ORDER = "out_of_order"
    """The sample is not newer than the baseline (late or duplicate): it is ignored."""
    ABSURD = "absurd"
    """The rate was computable but impossible (above what the node can do): dropped by the caller."""


@dataclass(slots=True)
class SuppressionCounts:
    """Samples that produced no rate, by reason, since start (monotonic counts)."""

    first: int = 0
    restart: int = 0
    reset: int = 0
    out_of_order: int = 0
    absurd: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counts keyed by :class:`Suppression` value."""
        return {field.name: getattr(self, field.name) for field in fields(self)}


class Delta(NamedTuple):
    """What changed between the baseline and the new sample of a series."""

    elapsed_ns: int
    """Time between the two samples' own read times, in ns; always > 0."""
    counters: Counters
    """Per counter, the increase (>= 0), or ``None`` when either sample lacks that counter; as long as the
    shorter of the two samples' counters (the rest are absent)."""


_INCREASES = {count: fieldcode.increases_of(count) for count in range(1, 17)}
"""Straight-line increases for the counts series have (a container's 7 or 15, a pod's 8, a node's 3)."""

# Built without NamedTuple's __new__ (a Python-level call): update runs for every sample of every batch.
_new_delta: Callable[[tuple[int, Counters]], Delta] = partial(tuple.__new__, Delta)


class _Baseline:
    """The previous accepted sample of a series; mutated in place to avoid an allocation per sample."""

    __slots__ = ("counters", "marker", "seen_ns", "timestamp_ns")

    def __init__(self, timestamp_ns: int, marker: object, counters: Counters, seen_ns: int) -> None:
        self.timestamp_ns = timestamp_ns
        self.marker = marker
        self.counters = counters
        self.seen_ns = seen_ns


class RateTracker(Generic[K]):
    """Baselines of many series of one kind, keyed by ``K``; every series of a tracker has the same order."""

    __slots__ = ("_counts", "_series")

    def __init__(self, counts: SuppressionCounts | None = None) -> None:
        self._series: dict[K, _Baseline] = {}
        self._counts = counts if counts is not None else SuppressionCounts()

    @property
    def counts(self) -> SuppressionCounts:
        """Suppressions counted by this tracker (shared with others when handed in)."""
        return self._counts

    def __len__(self) -> int:
        return len(self._series)

    def __contains__(self, key: object) -> bool:
        return key in self._series

    def update(
        self, key: K, timestamp_ns: int, marker: object, counters: Counters, *, seen_ns: int
    ) -> Delta | None:
        """Record a sample read at ``timestamp_ns`` (ns); the deltas since the previous one, or ``None``.

        ``marker`` identifies the incarnation (start or boot time); ``seen_ns`` is the caller's clock (ns),
        used only for expiry.
        """
        baseline = self._series.get(key)
        if baseline is None:
            self._series[key] = _Baseline(timestamp_ns, marker, counters, seen_ns)
            self._counts.first += 1
            return None
        # A late or resent sample still proves the series is alive, so it postpones expiry.
        baseline.seen_ns = seen_ns
        elapsed_ns = timestamp_ns - baseline.timestamp_ns
        if elapsed_ns <= 0:
            # Older than (or as old as) what we hold: a rate against it would run backwards or divide by
            # zero, and adopting it would make the next in-order sample's interval wrong. Keep the baseline.
            self._counts.out_of_order += 1
            return None
        if marker != baseline.marker:
            # A new incarnation counts from zero again; the difference to the old one means nothing.
            self._rebase(baseline, timestamp_ns, marker, counters)
            self._counts.restart += 1
            return None
        previous = baseline.counters
        try:
            count = len(counters)
            straight = _INCREASES.get(count) if count == len(previous) else None
            if straight is not None:
                found = straight(counters, previous)  # type: ignore[arg-type]
                reset = found is None
                increases: Counters = () if found is None else found
            else:
                # map stops at the shorter, as absent trailing counters should (see Counters).
                increases = tuple(map(sub, counters, previous))
                reset = bool(increases) and min(increases) < 0  # type: ignore[type-var,operator]
        except TypeError:
            # A counter is None in one of the two samples: that one has no increase, the others do.
            increases = tuple(
                None if new is None or old is None else new - old
                for new, old in zip(counters, previous, strict=False)
            )
            reset = any(increase is not None and increase < 0 for increase in increases)
        baseline.timestamp_ns = timestamp_ns
        baseline.counters = counters
        if reset:
            # The source restarted a counter under the same identity (cgroup recreated, 32-bit wrap). How
            # much happened before the reset is unknowable, and a partial rate would under-report without
            # saying so: give none, and count from the new value.
            self._counts.reset += 1
            return None
        return _new_delta((elapsed_ns, increases))

    def sweep(self, now_ns: int, expiry_ns: int) -> int:
        """Forget series not seen (by the caller's clock, ns) for ``expiry_ns``; returns how many."""
        horizon = now_ns - expiry_ns
        stale = [key for key, baseline in self._series.items() if baseline.seen_ns <= horizon]
        for key in stale:
            del self._series[key]
        return len(stale)

    @staticmethod
    def _rebase(baseline: _Baseline, timestamp_ns: int, marker: object, counters: Counters) -> None:
        baseline.timestamp_ns = timestamp_ns
        baseline.marker = marker
        baseline.counters = counters

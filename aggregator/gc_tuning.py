"""The aggregator process's garbage-collector thresholds: few collections while a query builds its answer.

The query window holds hundreds of thousands of container-tracked objects for as long as series live, and
one ``metrics.k8s.io`` list of 30,000 pods allocates ~150,000 short-lived ones. With CPython's default
thresholds (700, 10, 10) such a list set off over two hundred young collections and several full ones, each
walking the whole window: about half of the query's CPU (docs/performance.md). Larger thresholds collect the
same garbage (reference counting frees almost everything; only cycles wait for a collection), in far fewer
passes. Nothing is frozen, so cyclic garbage is still reclaimed.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
"""Allocations minus deallocations between young collections (CPython's default: 700)."""
MIDDLE_THRESHOLD = 20
"""Young collections per middle-generation collection (default 10)."""
OLD_THRESHOLD = 100
"""Middle collections per full-collection candidate (default 10; CPython also waits for 25% growth)."""


def tune_garbage_collector() -> tuple[int, int, int]:
    """Set the aggregator's thresholds for this process; the previous ones, to restore in tests."""
    previous = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, MIDDLE_THRESHOLD, OLD_THRESHOLD)
    return previous

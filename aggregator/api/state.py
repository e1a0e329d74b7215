"""What one running app holds: settings, the pipeline, the sink, metrics and the recently seen batch ids."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from aggregator.api.models import IngestResponse
from aggregator.api.query_state import QueryApi
from aggregator.metrics import AggregatorMetrics
from aggregator.pipeline import Pipeline
from aggregator.settings import AggregatorSettings
from aggregator.sinks import Sink

DUPLICATE_WINDOW_SECONDS = 600.0
"""How long a batch_id is remembered; longer than a collector retries one batch before giving up on it."""
DUPLICATE_MAX_ENTRIES = 200_000
"""Bounds the memory of remembered ids (about 1,000 nodes at 10 s for the whole window)."""


class RecentBatches:
    """Answers already given to batch ids seen within ``window_ns``, oldest forgotten first."""

    def __init__(self, *, window_ns: int, max_entries: int = DUPLICATE_MAX_ENTRIES) -> None:
        self._window_ns = window_ns
        self._max_entries = max_entries
        self._seen: OrderedDict[str, tuple[int, IngestResponse]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def get(self, batch_id: str, now_ns: int) -> IngestResponse | None:
        """The answer given to ``batch_id`` if it was seen within the window (``now_ns`` wall clock)."""
        self._forget_old(now_ns)
        entry = self._seen.get(batch_id)
        return entry[1] if entry is not None else None

    def remember(self, batch_id: str, answer: IngestResponse, now_ns: int) -> None:
        """Record the answer given to ``batch_id`` at ``now_ns``."""
        self._seen[batch_id] = (now_ns, answer)
        self._seen.move_to_end(batch_id)
        while len(self._seen) > self._max_entries:
            self._seen.popitem(last=False)

    def _forget_old(self, now_ns: int) -> None:
        while self._seen:
            seen_at, _ = next(iter(self._seen.values()))
            if now_ns - seen_at <= self._window_ns:
                return
            self._seen.popitem(last=False)


@dataclass(slots=True)
class AggregatorState:
    """The app's parts; only the event loop thread touches ``pipeline`` and ``recent_batches``."""

    settings: AggregatorSettings
    pipeline: Pipeline
    metrics: AggregatorMetrics
    clock_ns: Callable[[], int]
    recent_batches: RecentBatches = field(
        default_factory=lambda: RecentBatches(window_ns=int(DUPLICATE_WINDOW_SECONDS * 1e9))
    )
    sink: Sink | None = None
    """Set by the app's lifespan (built from settings unless one was handed in)."""
    query: QueryApi | None = None
    """The query API's recent window; fed with every point the pipeline produces and the batches' labels."""

"""Where points go: the narrow ``Sink`` protocol and its implementations (InfluxDB v1, v2, memory)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from aggregator.points import Point


class Sink(Protocol):
    """Accepts points; ``flush`` blocks until everything accepted so far was written or failed for good.

    ``write`` never blocks on the network: implementations buffer (bounded) and write in the background.
    """

    def write(self, points: Sequence[Point]) -> None: ...

    def flush(self, timeout_seconds: float | None = None) -> bool:
        """Write what is buffered; ``True`` when the buffer drained before the timeout."""
        ...

    def close(self) -> None: ...

"""The unit the aggregator writes: one InfluxDB point (measurement, tags, float fields, time in ns)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple


# A NamedTuple rather than a frozen dataclass: as immutable, but built several times faster (a frozen
# dataclass sets each field through object.__setattr__), and the pipeline builds one or two per container
# per scrape; the garbage collector also stops tracking a tuple that holds only untracked values.
class Point(NamedTuple):
    """One InfluxDB point. Fields are floats (see the catalog); ``time_ns`` is the bucket start in ns.

    Read-only, dicts included: successive points of a series share one ``tags`` dict (``aggregator.tags``),
    and sinks serialise points after they were handed over.
    """

    measurement: str
    tags: dict[str, str]
    fields: dict[str, float]
    time_ns: int

    def as_json(self) -> dict[str, Any]:
        """The point as the JSON shape users see (``--once`` output, debugging)."""
        return {
            "measurement": self.measurement,
            "tags": self.tags,
            "fields": self.fields,
            "time": self.time_ns,
        }


new_point: Callable[[tuple[str, dict[str, str], dict[str, float], int]], Point] = partial(
    tuple.__new__, Point
)
"""``Point(*values)`` without NamedTuple's Python-level ``__new__``: the ingest path builds one or two per
container sample."""

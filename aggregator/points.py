"""The unit the aggregator writes: one InfluxDB point (measurement, tags, float fields, time in ns)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Point:
    """One InfluxDB point. Fields are floats (see the catalog); ``time_ns`` is the bucket start in ns."""

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

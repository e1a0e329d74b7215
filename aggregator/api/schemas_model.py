"""Response models of the Heapster model API (``/api/v1/model/...``), shaped exactly as Heapster's JSON."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Timestamp = Annotated[
    str,
    Field(
        json_schema_extra={"format": "date-time"},
        description="RFC 3339 in UTC, Go's RFC3339Nano form (fraction without trailing zeros).",
        examples=["2024-05-01T10:00:00Z"],
    ),
]


class MetricPoint(BaseModel):
    """One value at the start of its time bucket (or step)."""

    timestamp: Timestamp
    value: int = Field(ge=0, description="In the metric's unit (millicores, bytes, bytes/s, count).")


class MetricResult(BaseModel):
    """A metric's values over the range asked, oldest first."""

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    metrics: list[MetricPoint]
    latest_timestamp: Timestamp = Field(
        alias="latestTimestamp",
        description="Time of the newest point; Go's zero time (0001-01-01T00:00:00Z) when there is none.",
    )


class MetricResultList(BaseModel):
    """One result per pod of a ``pod-list`` request, in the order the pods were named."""

    items: list[MetricResult]

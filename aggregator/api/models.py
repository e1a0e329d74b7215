"""Response models of the aggregator's HTTP API, by family: ingest, health, errors."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

SampleKind = Literal["container", "pod", "node"]

MAX_REJECTED_LISTED = 100
"""How many rejected samples an ingest answer lists one by one (all are counted)."""


class RejectedSample(BaseModel):
    """A sample left out of an accepted batch, and why."""

    kind: SampleKind
    index: int = Field(ge=0, description="Position in the batch's ``containers`` or ``pods`` (0 for node).")
    reason: str = Field(description="The invalid fields and what is wrong with each (values not echoed).")


class IngestResponse(BaseModel):
    """What became of one batch."""

    accepted_containers: int = Field(ge=0, description="Container samples in the batch.")
    points: int = Field(ge=0, description="Points the batch produced for InfluxDB (rollups follow later).")
    duplicate: bool = Field(
        default=False, description="The batch_id was seen recently: it was not processed again."
    )
    rejected_samples: int = Field(
        default=0, ge=0, description="Invalid samples left out; the rest of the batch was accepted."
    )
    rejected: list[RejectedSample] = Field(
        default=[], description=f"The first {MAX_REJECTED_LISTED} rejected samples: where and why."
    )


class HealthResponse(BaseModel):
    """The process answers."""

    status: str = "ok"


class ReadinessResponse(BaseModel):
    """Whether the aggregator can deliver what it accepts; ``reason`` says why not."""

    ready: bool
    reason: str | None = None
    buffer_points: int | None = Field(default=None, description="Points accepted but not yet written.")
    buffer_capacity: int | None = Field(default=None, description="Most points the write buffer holds.")
    last_write_success_ns: int | None = Field(
        default=None, description="Wall clock of the last stored write."
    )


class ErrorResponse(BaseModel):
    """A refused request; ``detail`` says what to change."""

    detail: str

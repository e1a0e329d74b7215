"""Parsing an ingest body into a ``Batch`` that keeps the valid samples and names the invalid ones.

One bad reading (a negative counter, a float where the kernel gives integers, ``NaN``) must not cost the
node its whole scrape. A body whose envelope is wrong (not JSON, wrong node or source, too deep, too many
samples) is still refused as a whole: there is nothing trustworthy to keep from it.

Usage::

    parsed = parse_batch(body)          # ValidationError when the envelope itself is invalid
    parsed.batch.containers             # only the samples that passed
    parsed.rejected                     # [RejectedSample(kind="container", index=3, reason="...")]

A valid body is validated once, straight from JSON (the common case costs nothing extra); only a body with
an invalid sample is parsed a second time, leniently, to validate its samples one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails

from aggregator.api.models import RejectedSample, SampleKind
from collector.wire import Batch, ContainerSample, Name, NodeSample, PodSample, TimestampNs

_M = TypeVar("_M", bound=BaseModel)

MAX_REASON_ERRORS = 3
"""How many of one sample's errors its reason lists."""

_SAMPLE_LISTS = {"containers": "container", "pods": "pod"}


@dataclass(frozen=True, slots=True)
class ParsedBatch:
    """The batch with its valid samples only, and the samples that were left out."""

    batch: Batch
    rejected: list[RejectedSample]


class _LenientBatch(BaseModel):
    """``Batch`` with its samples left as raw JSON values, to be validated one at a time."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    batch_id: Annotated[str, Field(min_length=1, max_length=64)]
    node: Name
    source: Literal["docker", "kubelet"]
    scraped_at_ns: TimestampNs
    interval_seconds: Annotated[float, Field(gt=0, le=3600)]
    node_sample: Any = None
    containers: Annotated[list[Any], Field(max_length=20_000)] = []
    pods: Annotated[list[Any], Field(max_length=20_000)] = []


def parse_batch(body: bytes) -> ParsedBatch:
    """The batch in ``body`` (JSON); raises ``ValidationError`` when anything but a sample is invalid."""
    try:
        return ParsedBatch(Batch.model_validate_json(body), [])
    except ValidationError as exc:
        if not all(_is_sample_error(error) for error in exc.errors()):
            raise
    envelope = _LenientBatch.model_validate_json(body)
    rejected: list[RejectedSample] = []
    containers = _valid(ContainerSample, "container", envelope.containers, rejected)
    pods = _valid(PodSample, "pod", envelope.pods, rejected)
    node_sample: NodeSample | None = None
    if envelope.node_sample is not None:
        nodes = _valid(NodeSample, "node", [envelope.node_sample], rejected)
        node_sample = nodes[0] if nodes else None
    batch = Batch(
        schema_version=envelope.schema_version,
        batch_id=envelope.batch_id,
        node=envelope.node,
        source=envelope.source,
        scraped_at_ns=envelope.scraped_at_ns,
        interval_seconds=envelope.interval_seconds,
        node_sample=node_sample,
        containers=containers,
        pods=pods,
    )
    return ParsedBatch(batch, rejected)


def _is_sample_error(error: ErrorDetails) -> bool:
    """Whether the error lies inside one sample (``containers.3...``, ``pods.0...``, ``node_sample...``)."""
    loc = error["loc"]
    if not loc:
        return False
    if loc[0] == "node_sample":
        return True
    return loc[0] in _SAMPLE_LISTS and len(loc) > 1 and isinstance(loc[1], int)


def _valid(model: type[_M], kind: SampleKind, raw: list[Any], rejected: list[RejectedSample]) -> list[_M]:
    """The samples of ``raw`` that ``model`` accepts; the others are appended to ``rejected``."""
    valid: list[_M] = []
    for index, item in enumerate(raw):
        try:
            valid.append(model.model_validate(item))
        except ValidationError as exc:
            rejected.append(RejectedSample(kind=kind, index=index, reason=describe_sample_errors(exc)))
    return valid


def describe_sample_errors(exc: ValidationError) -> str:
    """A sample's errors as ``field: message`` pairs (the first few; never the offending values)."""
    errors = exc.errors(include_url=False, include_input=False)
    parts = [
        f"{'.'.join(str(part) for part in error['loc']) or 'sample'}: {error['msg']}"
        for error in errors[:MAX_REASON_ERRORS]
    ]
    if len(errors) > MAX_REASON_ERRORS:
        parts.append(f"... and {len(errors) - MAX_REASON_ERRORS} more")
    return "; ".join(parts)

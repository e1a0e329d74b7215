"""``POST /api/v1/ingest``: one collector batch (gzip or plain JSON) into the pipeline and on to the sink.

The handler is ``async`` so the pipeline is only ever touched from the event loop thread. It reads the
body itself, counting bytes as they arrive and decompressing incrementally, so neither a huge body nor a
gzip bomb is ever held in memory beyond ``max_body_bytes``.
"""

from __future__ import annotations

import functools
import logging
import time
import zlib
from collections.abc import AsyncIterator
from typing import cast

from fastapi import APIRouter, HTTPException, Request, Response, status
from prometheus_client import Counter
from pydantic import ValidationError

from aggregator.api.batch_parsing import ParsedBatch, parse_batch
from aggregator.api.deps import MetricsDep, SinkDep, StateDep, get_state, require_ingest_auth
from aggregator.api.models import MAX_REJECTED_LISTED, ErrorResponse, IngestResponse, SampleKind
from aggregator.errors import BadBatchError, BodyTooLargeError
from aggregator.metrics import AggregatorMetrics
from aggregator.sinks import Sink
from aggregator.sinks.buffered import MonitoredSink

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["ingest"])

_MAX_ERRORS_IN_MESSAGE = 10


class UnsupportedEncodingError(BadBatchError):
    """A ``Content-Encoding`` other than gzip or identity (415)."""


class _BoundedGunzip:
    """Gunzips incrementally and refuses to produce more than ``limit`` bytes (gzip bombs stop early)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        # 16 + MAX_WBITS: expect the gzip header and trailer, not a bare zlib stream.
        self._decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._out = bytearray()

    def feed(self, data: bytes) -> None:
        """Decompress ``data``; ``BodyTooLargeError`` past the limit, ``BadBatchError`` if malformed."""
        while True:
            if self._decoder.eof and data:
                raise BadBatchError("malformed gzip body: data after the end of the gzip stream")
            # Ask for at most one byte past the limit: enough to know it was exceeded, never more.
            room = self._limit - len(self._out) + 1
            try:
                chunk = self._decoder.decompress(data, room)
            except zlib.error as exc:
                raise BadBatchError(f"malformed gzip body: {exc}") from exc
            self._out += chunk
            if len(self._out) > self._limit:
                raise BodyTooLargeError(f"decompressed body exceeds the limit of {self._limit} bytes")
            data = self._decoder.unconsumed_tail
            # A full chunk may leave output pending inside zlib even with all input consumed: ask again.
            if not data and len(chunk) < room:
                return

    def finish(self) -> bytes:
        """The whole decompressed body; raises ``BadBatchError`` when the gzip stream is incomplete."""
        if not self._decoder.eof:
            raise BadBatchError("malformed gzip body: truncated (no end of gzip stream)")
        if self._decoder.unused_data:
            raise BadBatchError("malformed gzip body: data after the end of the gzip stream")
        return bytes(self._out)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, gunzipped when ``Content-Encoding: gzip``; at most ``limit`` bytes either way."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity", "gzip"):
        raise UnsupportedEncodingError(f"unsupported Content-Encoding {encoding!r}: send gzip or identity")
    gunzip = _BoundedGunzip(limit) if encoding == "gzip" else None
    return await _collect(request.stream(), limit, gunzip)


async def _collect(chunks: AsyncIterator[bytes], limit: int, gunzip: _BoundedGunzip | None) -> bytes:
    received = 0
    plain = bytearray()
    async for chunk in chunks:
        received += len(chunk)
        if received > limit:
            raise BodyTooLargeError(f"request body exceeds the limit of {limit} bytes")
        if gunzip is not None:
            gunzip.feed(chunk)
        else:
            plain += chunk
    return gunzip.finish() if gunzip is not None else bytes(plain)


def describe_validation_error(exc: ValidationError) -> str:
    """Pydantic's errors as ``location: message`` pairs, the first few of them, on one line."""
    errors = exc.errors(include_url=False)
    parts = [
        f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
        for error in errors[:_MAX_ERRORS_IN_MESSAGE]
    ]
    more = len(errors) - _MAX_ERRORS_IN_MESSAGE
    if more > 0:
        parts.append(f"... and {more} more")
    return "invalid batch: " + "; ".join(parts)


def _refuse(metrics: MetricsDep, outcome: str, code: int, message: str, request: Request) -> HTTPException:
    metrics.batches_received.labels(outcome=outcome).inc()
    client = request.client.host if request.client else None
    log.warning("refused ingest from %s (HTTP %d): %s", client, code, message)
    return HTTPException(code, message)


@router.post(
    "/ingest",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        200: {"model": IngestResponse, "description": "A resent batch: acknowledged, not processed again."},
        400: {"model": ErrorResponse, "description": "Malformed gzip body."},
        401: {"model": ErrorResponse, "description": "Missing or wrong bearer token."},
        403: {"model": ErrorResponse, "description": "No token configured and the client is not local."},
        413: {"model": ErrorResponse, "description": "Body too large, compressed or decompressed."},
        415: {"model": ErrorResponse, "description": "Unsupported Content-Encoding."},
        422: {"model": ErrorResponse, "description": "Not valid JSON or not a valid batch."},
    },
)
async def ingest(request: Request, response: Response) -> IngestResponse:
    """Accept one batch: 202 with the counts of what it produced, 200 when it was a resend.

    Invalid samples in a valid envelope are left out and listed (index and reason) in the answer.
    """
    # The state and the ingest check are called here rather than declared as dependencies: FastAPI's
    # resolver costs tens of microseconds per dependency and request, on the route every batch takes.
    state = await get_state(request)
    metrics = state.metrics
    await require_ingest_auth(request, state.settings, metrics)
    sink = state.sink
    if sink is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the aggregator is starting")
    started = time.perf_counter()
    try:
        return _ingest(await _read_batch(request, state, metrics), response, state, sink)
    finally:
        metrics.ingest_seconds.observe(time.perf_counter() - started)


async def _read_batch(request: Request, state: StateDep, metrics: MetricsDep) -> ParsedBatch:
    try:
        body = await read_body(request, state.settings.max_body_bytes)
    except BodyTooLargeError as exc:
        raise _refuse(metrics, "too_large", status.HTTP_413_CONTENT_TOO_LARGE, str(exc), request) from exc
    except UnsupportedEncodingError as exc:
        raise _refuse(
            metrics, "malformed", status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(exc), request
        ) from exc
    except BadBatchError as exc:
        raise _refuse(metrics, "malformed", status.HTTP_400_BAD_REQUEST, str(exc), request) from exc
    try:
        return parse_batch(body)
    except ValidationError as exc:
        message = describe_validation_error(exc)
        raise _refuse(metrics, "invalid", status.HTTP_422_UNPROCESSABLE_CONTENT, message, request) from exc


def _ingest(parsed: ParsedBatch, response: Response, state: StateDep, sink: SinkDep) -> IngestResponse:
    batch = parsed.batch
    metrics = state.metrics
    now_ns = state.clock_ns()
    key = f"{batch.node}\x00{batch.batch_id}"
    samples = {
        "container": len(batch.containers),
        "pod": len(batch.pods),
        "node": 1 if batch.node_sample is not None else 0,
    }
    earlier = state.recent_batches.get(key, now_ns)
    if earlier is not None:
        # The collector did not see our answer and sent the batch again: acknowledge, do not count twice.
        metrics.batches_received.labels(outcome="duplicate").inc()
        for kind, count in samples.items():
            metrics.samples_received.labels(kind=kind, outcome="duplicate").inc(count)
        response.status_code = status.HTTP_200_OK
        return earlier.model_copy(update={"duplicate": True})
    try:
        points = state.pipeline.ingest(batch, now_ns=now_ns)
    except BadBatchError as exc:
        metrics.batches_received.labels(outcome="invalid").inc()
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from exc
    if state.query is not None:
        state.query.take(batch, points, now_ns=now_ns)
    if points:
        if _takes_scrape_time(sink):
            cast(MonitoredSink, sink).write(points, scraped_at_ns=batch.scraped_at_ns)
        else:
            sink.write(points)
    answer = IngestResponse(
        accepted_containers=len(batch.containers),
        points=len(points),
        rejected_samples=len(parsed.rejected),
        rejected=parsed.rejected[:MAX_REJECTED_LISTED],
    )
    state.recent_batches.remember(key, answer, now_ns)
    batches, samples_by_kind = _accepted_counters(metrics)
    batches.inc()
    for kind, count in samples.items():
        samples_by_kind[kind].inc(count)
    if parsed.rejected:
        _count_rejected(parsed, metrics)
    return answer


@functools.lru_cache(maxsize=16)
def _accepted_counters(metrics: AggregatorMetrics) -> tuple[Counter, dict[str, Counter]]:
    """The counters every accepted batch increments, labelled once per app rather than per batch."""
    kinds: tuple[SampleKind, ...] = ("container", "pod", "node")
    return metrics.batches_received.labels(outcome="accepted"), {
        kind: metrics.samples_received.labels(kind=kind, outcome="accepted") for kind in kinds
    }


def _takes_scrape_time(sink: Sink) -> bool:
    """Whether ``sink`` takes each write's scrape time (a ``MonitoredSink``); checked once per sink type."""
    # A runtime Protocol check inspects every member: far too slow to repeat for every batch.
    known = _MONITORED_SINK_TYPES.get(type(sink))
    if known is None:
        known = _MONITORED_SINK_TYPES[type(sink)] = isinstance(sink, MonitoredSink)
    return known


_MONITORED_SINK_TYPES: dict[type, bool] = {}


def _count_rejected(parsed: ParsedBatch, metrics: MetricsDep) -> None:
    for rejected in parsed.rejected:
        metrics.samples_received.labels(kind=rejected.kind, outcome="rejected").inc()
    first = parsed.rejected[0]
    log.warning(
        "node %r: %d invalid sample(s) left out of batch %r, the rest accepted; first: %s %d: %s",
        parsed.batch.node,
        len(parsed.rejected),
        parsed.batch.batch_id,
        first.kind,
        first.index,
        first.reason,
    )

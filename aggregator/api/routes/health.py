"""Probes: ``GET /healthz`` (the process answers) and ``GET /readyz`` (what it accepts reaches InfluxDB)."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Response, status

from aggregator.api.deps import StateDep
from aggregator.api.models import HealthResponse, ReadinessResponse
from aggregator.errors import SinkError
from aggregator.sinks.buffered import MonitoredSink

router = APIRouter(tags=["health"])

BUFFER_NOT_READY_RATIO = 0.9
"""Above this fill level the aggregator is about to drop points: take it out of rotation."""
RECENT_WRITE_SECONDS = 30.0
"""A successful write this recent (or within three flush intervals) proves InfluxDB is reachable."""


@router.get("/healthz")
async def healthz() -> HealthResponse:
    """200 while the process serves requests."""
    return HealthResponse()


@router.get(
    "/readyz",
    responses={503: {"model": ReadinessResponse, "description": "Not ready; ``reason`` says why."}},
)
async def readyz(state: StateDep, response: Response) -> ReadinessResponse:
    """200 when writes reach InfluxDB (or it answers /ping before any write); 503 with a reason otherwise."""
    sink = state.sink
    if sink is None:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return ReadinessResponse(ready=False, reason="starting: the sink is not open yet")
    if not isinstance(sink, MonitoredSink):
        return ReadinessResponse(ready=True)
    stats = sink.stats()
    answer = ReadinessResponse(
        ready=True,
        buffer_points=stats.buffer_depth,
        buffer_capacity=stats.buffer_capacity,
        last_write_success_ns=stats.last_success_ns,
    )
    reason: str | None = None
    if stats.spool_bytes is not None and stats.spool_capacity_bytes:
        # An InfluxDB outage is absorbed on disk (bounded): stay in rotation so collectors keep delivering
        # durably, until the spool is about to drop its oldest data.
        fill = stats.spool_bytes / stats.spool_capacity_bytes
        if fill > BUFFER_NOT_READY_RATIO:
            reason = (
                f"spool {fill:.0%} full ({stats.spool_bytes} of {stats.spool_capacity_bytes} bytes): "
                f"InfluxDB is not keeping up ({stats.last_error or 'no write error'})"
            )
    elif stats.buffer_fill_ratio > BUFFER_NOT_READY_RATIO:
        reason = (
            f"write buffer {stats.buffer_fill_ratio:.0%} full ({stats.buffer_depth} of "
            f"{stats.buffer_capacity} points): InfluxDB is not keeping up"
        )
    elif stats.last_error is not None:
        reason = f"InfluxDB unreachable or failing: {stats.last_error}"
    else:
        recent_ns = max(RECENT_WRITE_SECONDS, 3 * state.settings.flush_interval_seconds) * 1e9
        if stats.last_success_ns is None or state.clock_ns() - stats.last_success_ns > recent_ns:
            try:
                # ping() blocks on the network: keep it off the event loop.
                await anyio.to_thread.run_sync(sink.ping)
            except SinkError as exc:
                reason = f"InfluxDB unreachable: {exc}"
    if reason is not None:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return answer.model_copy(update={"ready": False, "reason": reason})
    return answer

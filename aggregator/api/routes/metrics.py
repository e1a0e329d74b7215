"""``GET /metrics``: the aggregator's own metrics in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from aggregator.api.deps import MetricsDep

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(instruments: MetricsDep) -> Response:
    """Prometheus text; rendered on the event loop because it reads the (single-threaded) pipeline."""
    return Response(content=instruments.render(), media_type=CONTENT_TYPE_LATEST)

"""The FastAPI app: routers, the pipeline, and a lifespan that opens the sink, ticks rollups and drains.

Usage::

    app = create_app(AggregatorSettings())                    # writes to InfluxDB per the settings
    app = create_app(settings, sink=MemorySink())             # tests: points stay in memory
    uvicorn.run(app, host=settings.host, port=settings.port)
    api = create_metrics_api_app(app.state.aggregator, trust=live.current, authorizer=reviewer)  # APIService
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

import anyio.to_thread
import requests
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from aggregator.api.authz import Authorizer
from aggregator.api.durable_acks import DurableAckMiddleware
from aggregator.api.front_proxy import RequestHeaderTrust
from aggregator.api.metrics_api_guard import MetricsApiGuard, status_response
from aggregator.api.query_deps import require_query_token
from aggregator.api.query_state import build_query_api
from aggregator.api.routes import health, ingest, metrics, metrics_k8s, model
from aggregator.api.state import AggregatorState
from aggregator.metrics import AggregatorMetrics
from aggregator.pipeline import Pipeline
from aggregator.settings import AggregatorSettings
from aggregator.sinks import Sink
from aggregator.sinks.buffered import Backend, BufferedWriter, MonitoredSink
from aggregator.sinks.influx_v1 import InfluxV1Backend
from aggregator.sinks.influx_v2 import InfluxV2Backend
from aggregator.sinks.spool import Spool, SpooledWriter

log = logging.getLogger(__name__)

TICK_SECONDS = 0.5
"""How often rollups whose grace period ended are emitted: well under any sensible resolution."""
DRAIN_SECONDS = 10.0
"""How long shutdown waits for buffered points to reach InfluxDB before counting them as dropped."""


def build_sink(settings: AggregatorSettings) -> BufferedWriter | SpooledWriter:
    """The InfluxDB writer the settings describe (v1 or v2 API), spooling to disk when a spool dir is set."""
    backend: Backend
    if settings.influx_api == "v2":
        # The settings validator guarantees token, org and bucket for v2.
        assert settings.influx_token is not None
        assert settings.influx_org is not None
        assert settings.influx_bucket is not None
        backend = InfluxV2Backend(
            url=str(settings.influx_url),
            token=settings.influx_token.get_secret_value(),
            org=settings.influx_org,
            bucket=settings.influx_bucket,
            timeout_seconds=settings.influx_timeout_seconds,
        )
    else:
        password = settings.influx_password.get_secret_value() if settings.influx_password else None
        backend = InfluxV1Backend(
            requests.Session(),
            url=str(settings.influx_url),
            database=settings.influx_database,
            retention_policy=settings.influx_retention_policy,
            username=settings.influx_username,
            password=password,
            timeout_seconds=settings.influx_timeout_seconds,
        )
    if settings.spool_dir is not None:
        log.info(
            "spooling to %s (at most %d bytes) before InfluxDB", settings.spool_dir, settings.spool_max_bytes
        )
        return SpooledWriter(
            backend,
            Spool(settings.spool_dir, max_bytes=settings.spool_max_bytes),
            batch_points=settings.write_batch_points,
            flush_interval_seconds=settings.flush_interval_seconds,
        )
    return BufferedWriter(
        backend,
        batch_points=settings.write_batch_points,
        flush_interval_seconds=settings.flush_interval_seconds,
        max_points=settings.write_buffer_max_points,
    )


def create_app(
    settings: AggregatorSettings,
    *,
    sink: Sink | None = None,
    clock: Callable[[], int] = time.time_ns,
) -> FastAPI:
    """An aggregator app; ``sink`` replaces the InfluxDB writer (it is flushed but not closed at shutdown).

    ``clock`` returns wall-clock time in ns; it drives rollup deadlines and the duplicate-batch window.
    """
    state = AggregatorState(
        settings=settings,
        pipeline=Pipeline(
            cluster=settings.cluster_name,
            resolution_seconds=settings.resolution_seconds,
            rollup_grace_seconds=settings.rollup_grace_seconds,
            series_expiry_seconds=settings.series_expiry_seconds,
        ),
        metrics=AggregatorMetrics(),
        clock_ns=clock,
        query=build_query_api(settings, clock_ns=clock),
    )
    state.metrics.watch(pipeline=state.pipeline)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = sink is None
        active = build_sink(settings) if sink is None else sink
        state.sink = active
        state.metrics.watch(sink=active)
        ticker = asyncio.create_task(_tick_forever(state, active), name="kpulse-rollup-tick")
        try:
            yield
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            await _drain(state, active, owned=owned)
            if state.query is not None:
                state.query.close()

    app = FastAPI(
        title="kpulse aggregator",
        summary="Receives collector batches, computes rates and rollups, writes them to InfluxDB.",
        lifespan=lifespan,
    )
    app.state.aggregator = state
    app.state.query = state.query
    app.include_router(ingest.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(model.router)
    app.include_router(metrics_k8s.router)
    # With a spool, ingest answers once its points are fsynced, without blocking the loop meanwhile.
    app.add_middleware(DurableAckMiddleware)
    return app


def create_metrics_api_app(
    state: AggregatorState, *, trust: Callable[[], RequestHeaderTrust], authorizer: Authorizer | None
) -> FastAPI:
    """The app behind the ``v1beta1.metrics.k8s.io`` APIService: ``metrics.k8s.io`` and its discovery, probes.

    It serves the data of ``state`` (the main app's, whose lifespan runs the pipeline and the sink) and owns
    nothing. Every route but the probes requires the API server's front proxy (``trust`` returns the trust
    in force, asked per request) and a user ``authorizer`` allows (``None``: anyone the front proxy names,
    which is unsafe). No OpenAPI document: the kube-aggregator takes a 404 on ``/openapi/v2`` and
    ``/openapi/v3`` as "none provided".
    """
    if state.query is None:
        raise ValueError("the metrics API needs the query state create_app builds")
    app = FastAPI(title="kpulse metrics.k8s.io", openapi_url=None, docs_url=None, redoc_url=None)
    app.state.aggregator = state
    app.state.query = state.query
    # The API server forwards no bearer token: the front proxy's certificate authenticates callers here.
    app.dependency_overrides[require_query_token] = _no_query_token
    app.include_router(health.router)
    app.add_api_route("/livez", health.healthz, tags=["health"])
    app.include_router(metrics_k8s.router)
    app.add_exception_handler(HTTPException, _kubernetes_status)  # type: ignore[arg-type]
    app.add_middleware(MetricsApiGuard, trust=trust, authorizer=authorizer, metrics=state.metrics)
    return app


def _no_query_token() -> None:
    return None


async def _kubernetes_status(request: Request, exc: HTTPException) -> JSONResponse:
    # Unknown paths and methods answer as the API server does, in a Status, not FastAPI's {"detail": ...}.
    if exc.status_code == 404:
        return status_response(404, "the server could not find the requested resource")
    return status_response(exc.status_code, str(exc.detail))


async def _tick_forever(state: AggregatorState, sink: Sink) -> None:
    while True:
        await asyncio.sleep(TICK_SECONDS)  # a timer, not synchronisation
        _tick_once(state, sink)


def _tick_once(state: AggregatorState, sink: Sink) -> None:
    try:
        points = state.pipeline.tick(state.clock_ns())
    except Exception:  # the loop must carry on; one bad tick must not stop rollups for good
        state.metrics.tick_errors.inc()
        log.exception("rollup tick failed")
        return
    if state.query is not None:
        state.query.store.add(points, now_ns=state.clock_ns())
    if points:
        sink.write(points)


async def _drain(state: AggregatorState, sink: Sink, *, owned: bool) -> None:
    # Rollups already due go out with the rest; buckets still in their grace period cannot be completed.
    _tick_once(state, sink)
    drained = await anyio.to_thread.run_sync(sink.flush, DRAIN_SECONDS)
    if not drained and not isinstance(sink, SpooledWriter):
        log.error("shutdown: InfluxDB did not take every buffered point within %.0f s", DRAIN_SECONDS)
    if owned:
        if isinstance(sink, BufferedWriter | SpooledWriter):
            # Already drained as far as it goes: do not wait the full drain time a second time.
            await anyio.to_thread.run_sync(sink.close, 1.0)
        else:
            await anyio.to_thread.run_sync(sink.close)
    elif (
        isinstance(sink, MonitoredSink)
        and sink.latency_observer == state.metrics.scrape_to_write_seconds.observe
    ):
        # A handed-in sink outlives the app; stop feeding this app's histogram.
        sink.latency_observer = None

"""What the query routes share: the query service over the recent-window store, and the optional token.

Usage::

    query = build_query_api(settings, clock_ns=time.time_ns)    # store + InfluxDB history (v1 API)
    app.state.query = query                                      # read by ``query_deps.get_query_api``
    query.take(batch, points, now_ns=now)                        # after the pipeline, per batch
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import requests
from pydantic import SecretStr

from aggregator.api.pod_list_view import PodListView
from aggregator.points import Point
from aggregator.query.history import History
from aggregator.query.service import QueryService
from aggregator.query.store import RecentStore
from aggregator.settings import AggregatorSettings
from aggregator.sinks.influx_v1 import InfluxV1Backend
from collector.wire import Batch


@dataclass(frozen=True, slots=True)
class QueryApi:
    """The query side of one app: ``service`` answers, ``token`` (when set) is required of every caller,
    ``pods_view`` keeps all-pods lists rendered while they are asked for."""

    service: QueryService
    pods_view: PodListView
    token: SecretStr | None = None

    def take(self, batch: Batch, points: Sequence[Point], *, now_ns: int) -> None:
        """What the query API keeps of an ingested ``batch`` and the pipeline's ``points`` (wall clock ns)."""
        store = self.service.store
        store.add(points, now_ns=now_ns)
        store.add_labels(batch)
        self.pods_view.note(batch)

    @property
    def store(self) -> RecentStore:
        """The recent window the ingest path feeds."""
        return self.service.store

    def close(self) -> None:
        """Release the connections to InfluxDB (the app's shutdown); the store stays readable."""
        if self.service.history is not None:
            self.service.history.close()


def build_history(settings: AggregatorSettings) -> History | None:
    """InfluxDB history through the v1 query API the sink writes to; ``None`` for the v2 API (no InfluxQL)."""
    if settings.influx_api != "v1":
        return None
    password = settings.influx_password.get_secret_value() if settings.influx_password else None
    # A backend of its own (own session), never creating the database: reading must not change InfluxDB.
    backend = InfluxV1Backend(
        requests.Session(),
        url=str(settings.influx_url),
        database=settings.influx_database,
        retention_policy=settings.influx_retention_policy,
        username=settings.influx_username,
        password=password,
        timeout_seconds=settings.influx_timeout_seconds,
        create_database=False,
    )
    return History(
        backend,
        resolution_ns=max(1, round(settings.resolution_seconds * 1e9)),
        retention_policy=settings.influx_retention_policy,
    )


def build_query_api(
    settings: AggregatorSettings,
    *,
    clock_ns: Callable[[], int] = time.time_ns,
    history: History | None = None,
) -> QueryApi:
    """The store, service and token ``settings`` describe; ``history`` defaults to :func:`build_history`."""
    store = RecentStore(
        resolution_seconds=settings.resolution_seconds,
        window_seconds=settings.query_window_seconds,
        eviction_seconds=settings.series_eviction_seconds,
    )
    service = QueryService(
        store,
        cluster=settings.cluster_name,
        history=build_history(settings) if history is None else history,
        clock_ns=clock_ns,
    )
    return QueryApi(
        service=service,
        pods_view=PodListView(service, idle_seconds=settings.pod_list_view_idle_seconds),
        token=settings.query_token,
    )

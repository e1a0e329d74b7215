"""A real aggregator for the HTTP benchmarks: ``create_app`` with a ``MemorySink``, served by uvicorn.

Run as its own process so its CPU and memory are its own (``/proc/<pid>/stat``) and the load generator does
not share its interpreter lock::

    python -m benchmarks.serve --port 18080 --window-seconds 3600
    python -m benchmarks.serve --port 18080 --preload-nodes 1000      # 30,000 pods, fed in-process

With ``--preload-nodes`` the server feeds a synthetic cluster's scrapes, taken now, straight into its own
pipeline and query window (what the ingest route does after validation) before it starts serving: the
query benchmarks then need not post 60,000 samples over HTTP, which on a loaded machine took longer than
the API's freshness cut-off. ``GET /bench/scrape`` says when the newest round was scraped;
``POST /bench/scrape`` feeds one more round, taken now, once a scrape interval has passed since the last.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import uvicorn
from fastapi import FastAPI

from aggregator.api.app import create_app
from aggregator.api.state import AggregatorState
from aggregator.gc_tuning import tune_garbage_collector
from aggregator.points import Point
from aggregator.settings import AggregatorSettings
from aggregator.sinks.memory import MemorySink
from benchmarks.synthetic import SyntheticCluster

_NS_PER_S = 1_000_000_000


class _DiscardingSink(MemorySink):
    """A ``MemorySink`` that forgets what it stored, so a long run does not grow without bound."""

    def write(self, points: Sequence[Point], *, scraped_at_ns: int | None = None) -> None:
        super().write(points, scraped_at_ns=scraped_at_ns)
        # Stored and forgotten at once: the server's memory is then the pipeline's and the window's.
        self.flush()
        self.clear()


class Feeder:
    """Feeds ``cluster``'s scrapes into ``state`` in-process, as the ingest route does after validation."""

    def __init__(self, state: AggregatorState, sink: MemorySink, cluster: SyntheticCluster) -> None:
        self._state = state
        self._sink = sink
        self._cluster = cluster
        self._interval_ns = round(cluster.interval_seconds * _NS_PER_S)
        self.scraped_at_ns: int | None = None
        """When the newest round was scraped (ns since the epoch); ``None`` before the first."""

    @property
    def pods(self) -> int:
        """Pods the cluster has."""
        return self._cluster.pod_count

    def preload(self) -> None:
        """Two rounds (rates need two samples): one an interval ago, then one taken now."""
        self._feed(time.time_ns() - self._interval_ns)
        self._feed(time.time_ns())

    def refresh(self) -> bool:
        """Feed a round taken now if an interval has passed since the newest; whether one was fed."""
        now = time.time_ns()
        if self.scraped_at_ns is not None and now - self.scraped_at_ns < self._interval_ns:
            return False
        self._feed(now)
        return True

    def _feed(self, scraped_at_ns: int) -> None:
        state = self._state
        query = state.query
        assert query is not None, "the app was built without its query window"
        for batch in self._cluster.scrape(scraped_at_ns=scraped_at_ns):
            now = state.clock_ns()
            points = state.pipeline.ingest(batch, now_ns=now)
            query.take(batch, points, now_ns=now)
            self._sink.write(points)
        self.scraped_at_ns = scraped_at_ns


def add_feed_routes(app: FastAPI, feeder: Feeder) -> None:
    """``GET``/``POST /bench/scrape`` on ``app``: the benchmark's control of ``feeder``, not the product's."""

    def answer(fed: bool) -> dict[str, int | bool | None]:
        return {"scraped_at_ns": feeder.scraped_at_ns, "pods": feeder.pods, "fed": fed}

    async def newest() -> dict[str, int | bool | None]:
        return answer(False)

    # async: the pipeline is only ever touched from the event loop thread, as by the ingest route.
    async def scrape() -> dict[str, int | bool | None]:
        return answer(feeder.refresh())

    app.add_api_route("/bench/scrape", newest, methods=["GET"], include_in_schema=False)
    app.add_api_route("/bench/scrape", scrape, methods=["POST"], include_in_schema=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--window-seconds", type=float, default=900.0)
    parser.add_argument("--preload-nodes", type=int, default=0, help="synthetic nodes fed in-process")
    parser.add_argument("--pods-per-node", type=int, default=30)
    parser.add_argument("--interval-seconds", type=float, default=10.0)
    args = parser.parse_args()
    tune_garbage_collector()  # as python -m aggregator does
    settings = AggregatorSettings(
        host="127.0.0.1",
        port=args.port,
        cluster_name="bench",
        resolution_seconds=args.interval_seconds,
        query_window_seconds=args.window_seconds,
        series_eviction_seconds=max(900.0, args.window_seconds),
        max_body_bytes=64 * 1024 * 1024,
        # History is only asked beyond the window; point it at the local InfluxDB's nonexistent database.
        influx_database="kph9_unused",
        log_level="WARNING",
    )
    sink = _DiscardingSink()
    app = create_app(settings, sink=sink)
    if args.preload_nodes > 0:
        cluster = SyntheticCluster(
            nodes=args.preload_nodes,
            pods_per_node=args.pods_per_node,
            interval_seconds=args.interval_seconds,
            seed=21,
        )
        feeder = Feeder(app.state.aggregator, sink, cluster)
        # Before serving, so the server is loaded once /healthz answers.
        feeder.preload()
        add_feed_routes(app, feeder)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()

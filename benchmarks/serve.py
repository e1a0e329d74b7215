"""A real aggregator for the HTTP benchmarks: ``create_app`` with a ``MemorySink``, served by uvicorn.

Run as its own process so its CPU and memory are its own (``/proc/<pid>/stat``) and the load generator does
not share its interpreter lock::

    python -m benchmarks.serve --port 18080 --window-seconds 3600
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import uvicorn

from aggregator.api.app import create_app
from aggregator.points import Point
from aggregator.settings import AggregatorSettings
from aggregator.sinks.memory import MemorySink


class _DiscardingSink(MemorySink):
    """A ``MemorySink`` that forgets what it stored, so a long run does not grow without bound."""

    def write(self, points: Sequence[Point], *, scraped_at_ns: int | None = None) -> None:
        super().write(points, scraped_at_ns=scraped_at_ns)
        # Stored and forgotten at once: the server's memory is then the pipeline's and the window's.
        self.flush()
        self.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--window-seconds", type=float, default=900.0)
    args = parser.parse_args()
    settings = AggregatorSettings(
        host="127.0.0.1",
        port=args.port,
        cluster_name="bench",
        query_window_seconds=args.window_seconds,
        series_eviction_seconds=max(900.0, args.window_seconds),
        max_body_bytes=64 * 1024 * 1024,
        # History is only asked beyond the window; point it at the local InfluxDB's nonexistent database.
        influx_database="kph9_unused",
        log_level="WARNING",
    )
    app = create_app(settings, sink=_DiscardingSink())
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()

"""The real aggregator app, served by uvicorn, fed over HTTP with a simulation's batches: for API tests.

Usage::

    with running_aggregator(simulation, scrapes=12) as running:
        requests.get(f"{running.url}/api/v1/model/nodes/")
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests
from fastapi import FastAPI

from aggregator.api import create_app
from aggregator.settings import AggregatorSettings
from aggregator.sinks.memory import MemorySink
from tests.aggregator.query.simulation import NS_PER_S, Simulation
from tests.aggregator.servers import serve
from tests.helpers import wait_until


class Clock:
    """A wall clock the test moves; the app reads it from its threads."""

    def __init__(self, now_ns: int) -> None:
        self._now = now_ns
        self._lock = threading.Lock()

    def __call__(self) -> int:
        with self._lock:
            return self._now

    def set(self, now_ns: int) -> None:
        with self._lock:
            self._now = now_ns


@dataclass
class RunningAggregator:
    url: str
    app: FastAPI
    sim: Simulation
    clock: Clock
    sink: MemorySink

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(f"{self.url}{path}", params=params or None, timeout=30)

    def feed(self, scrapes: int) -> None:
        """Post ``scrapes`` more scrapes of every node, moving the clock along as a real one would."""
        for _ in range(scrapes):
            index = self.sim.scrape
            self.sim.scrape += 1
            scraped = self.sim.scrape_time_ns(index)
            self.clock.set(scraped + NS_PER_S)
            for batch in self.sim.batches(index):
                response = requests.post(
                    f"{self.url}/api/v1/ingest",
                    data=batch.model_dump_json(exclude_none=True),
                    headers={"Content-Type": "application/json"},
                    timeout=30,
                )
                assert response.status_code == 202, response.text
        # Past the last bucket's rollup grace: the app's ticker emits namespace and cluster points.
        self.clock.set(self.sim.scrape_time_ns(self.sim.scrape - 1) + 8 * NS_PER_S)


def settings_for(sim: Simulation, **overrides: Any) -> AggregatorSettings:
    values: dict[str, Any] = {
        "cluster_name": sim.cluster,
        "resolution_seconds": sim.resolution_seconds,
        "rollup_grace_seconds": 2.0,
        # Nothing is written anywhere (memory sink); history reads go to a database nobody creates.
        "influx_database": "kph8_never_created",
    }
    values.update(overrides)
    return AggregatorSettings(**values)


@contextlib.contextmanager
def running_aggregator(sim: Simulation, *, scrapes: int, **settings: Any) -> Iterator[RunningAggregator]:
    """The app with a memory sink under uvicorn, after ``scrapes`` scrapes of ``sim`` were posted to it."""
    clock = Clock(sim.scrape_time_ns(0))
    sink = MemorySink()
    app = create_app(settings_for(sim, **settings), sink=sink, clock=clock)
    with serve(app) as url:
        running = RunningAggregator(url, app, sim, clock, sink)
        running.feed(scrapes)
        last_bucket = sim.scrape_time_ns(sim.scrape - 1) - NS_PER_S // 2
        # The ticker runs on its own schedule: wait for the last bucket's cluster rollup.
        wait_until(
            lambda: any(p.measurement == "cluster" and p.time_ns == last_bucket for p in _flushed(sink)),
            10,
            "the cluster rollup of the last bucket never came",
        )
        yield running


def _flushed(sink: MemorySink) -> list[Any]:
    sink.flush()
    return sink.points

"""Ingest with a disk spool over real HTTP: answered only once fsynced, while the event loop keeps serving,
and concurrent requests share one fdatasync."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from aggregator.api import create_app
from aggregator.settings import AggregatorSettings
from aggregator.sinks.spool import Spool, SpooledWriter
from tests.aggregator.api.batches import make_batch
from tests.aggregator.servers import serve
from tests.aggregator.sinks.scripted import ScriptedBackend
from tests.aggregator.sinks.test_spool import GatedSync
from tests.helpers import wait_until


class Posts:
    """Ingest POSTs, each in a thread of its own; records each answer's status."""

    def __init__(self, url: str) -> None:
        self._url = url
        self.answers: dict[str, int] = {}
        self._threads: list[threading.Thread] = []

    def start(self, node: str) -> None:
        batch = make_batch(node=node, scraped_at_ns=time.time_ns())
        body = gzip.compress(batch.model_dump_json(exclude_none=True).encode())

        def post() -> None:
            response = requests.post(
                f"{self._url}/api/v1/ingest",
                data=body,
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
                timeout=30,
            )
            self.answers[node] = response.status_code

        thread = threading.Thread(target=post, daemon=True)
        thread.start()
        self._threads.append(thread)

    def join(self) -> None:
        for thread in self._threads:
            thread.join(30)


@pytest.fixture
def sync() -> Iterator[GatedSync]:
    gate = GatedSync()
    yield gate
    gate.let_go()


@pytest.fixture
def writer(sync: GatedSync, tmp_path: Path) -> Iterator[SpooledWriter]:
    writer = SpooledWriter(
        ScriptedBackend(),
        Spool(tmp_path / "spool", max_bytes=1 << 20, fdatasync=sync),
        flush_interval_seconds=60,
    )
    yield writer
    writer.close(timeout_seconds=5)


def test_ingest_answers_after_the_fsync_and_the_loop_serves_while_it_runs(
    sync: GatedSync, writer: SpooledWriter
) -> None:
    # A long grace period: no rollup is due during the test, so only ingest writes to the spool.
    settings = AggregatorSettings(rollup_grace_seconds=3600)
    with serve(create_app(settings, sink=writer)) as url:
        posts = Posts(url)
        posts.start("n0")
        wait_until(lambda: sync.calls == 1, 10, "the first batch was never fsynced")
        per_batch = writer.stats().points_accepted
        for index in range(1, 5):
            posts.start(f"n{index}")
        wait_until(
            lambda: writer.stats().points_accepted == 5 * per_batch, 10, "the other batches were not spooled"
        )
        # The event loop is free while the fdatasync runs: other requests are answered meanwhile.
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
        assert posts.answers == {}

        sync.release()
        wait_until(lambda: posts.answers == {"n0": 202}, 10, "the first batch was not answered")
        # The four others were appended as one group and wait for its fdatasync.
        wait_until(lambda: sync.calls == 2, 10, "the queued batches were not fsynced together")
        assert requests.get(f"{url}/healthz", timeout=5).status_code == 200
        assert posts.answers == {"n0": 202}

        sync.release()
        posts.join()

    assert posts.answers == {f"n{index}": 202 for index in range(5)}
    assert sync.calls == 2
    assert writer.stats().points_dropped == 0

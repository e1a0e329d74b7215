"""The node agent's loop: scrape the source on a fixed schedule, make a batch, hand it to the shipper.

Scrapes are aligned to multiples of the interval (10:00:00, 10:00:10, ...) so that the aggregator's
time buckets, which are the same multiples, receive exactly one scrape each from every node. A source that
cannot be read is logged here, and only here: one line when a failure episode starts (a run of failed
scrapes with one cause; another cause starts another episode), one when the source is readable again.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from collector.errors import SourceError
from collector.heartbeat import beat
from collector.sources import Source
from collector.wire import Batch

log = logging.getLogger(__name__)


@dataclass(slots=True)
class AgentStats:
    scrapes: int = 0
    scrape_failures: int = 0
    last_scrape_seconds: float = 0.0


class Agent:
    """Scrapes one source every ``interval_seconds`` and submits each scrape as one batch."""

    def __init__(
        self,
        source: Source,
        submit: Callable[[Batch], None],
        *,
        node_name: str,
        interval_seconds: float,
        clock_ns: Callable[[], int] = time.time_ns,
        heartbeat_file: Path | None = None,
    ) -> None:
        self._source = source
        self._submit = submit
        self._node_name = node_name
        self._interval_seconds = interval_seconds
        self._clock_ns = clock_ns
        self._heartbeat_file = heartbeat_file
        self._failing_cause: str | None = None
        """The cause of the episode under way; ``None`` while the source is readable."""
        self._failed_in_a_row = 0
        self.stats = AgentStats()

    def scrape_once(self) -> Batch:
        """Read the source once; raises ``SourceError`` when the source is unreachable."""
        scraped_at_ns = self._clock_ns()
        started = time.monotonic()
        scrape = self._source.collect()
        self.stats.last_scrape_seconds = time.monotonic() - started
        return Batch(
            batch_id=uuid.uuid4().hex,
            node=self._node_name,
            source=self._source.name,
            scraped_at_ns=scraped_at_ns,
            interval_seconds=self._interval_seconds,
            node_sample=scrape.node,
            containers=scrape.containers,
            pods=scrape.pods,
        )

    def tick(self) -> None:
        """One scheduled run: scrape and submit; a failing source is logged once per episode."""
        self.stats.scrapes += 1
        if self._heartbeat_file is not None:
            # Liveness of the schedule itself: an unreachable source is reported, not fixed by a restart.
            beat(self._heartbeat_file)
        try:
            batch = self.scrape_once()
        except SourceError as exc:
            self.stats.scrape_failures += 1
            self._failed_in_a_row += 1
            if exc.cause == self._failing_cause:
                log.debug("scrape failed again: %s", exc)
            else:
                self._failing_cause = exc.cause
                log.error("scrape failed: %s (will keep trying every %gs)", exc, self._interval_seconds)
            return
        if self._failing_cause is not None:
            log.info(
                "%s source readable again after %d failed scrape(s)", self._source.name, self._failed_in_a_row
            )
            self._failing_cause = None
            self._failed_in_a_row = 0
        log.debug(
            "scraped %d containers, %d pods in %.3fs",
            len(batch.containers),
            len(batch.pods),
            self.stats.last_scrape_seconds,
        )
        self._submit(batch)

    def run_until(self, stop: threading.Event) -> None:
        """Run ``tick`` on the aligned schedule until ``stop`` is set; a running scrape is let finish."""
        scheduler = BackgroundScheduler(timezone=UTC)
        scheduler.add_job(
            self.tick,
            IntervalTrigger(seconds=self._interval_seconds, start_date=next_aligned(self._interval_seconds)),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(self._interval_seconds)),
            id="scrape",
        )
        log.info(
            "scraping %s every %gs as node %s", self._source.name, self._interval_seconds, self._node_name
        )
        scheduler.start()
        try:
            stop.wait()
        finally:
            scheduler.shutdown(wait=True)


def next_aligned(interval_seconds: float, *, now: float | None = None) -> datetime:
    """The next wall-clock instant that is a whole multiple of ``interval_seconds`` since the epoch."""
    now = time.time() if now is None else now
    return datetime.fromtimestamp(math.floor(now / interval_seconds + 1) * interval_seconds, tz=UTC)

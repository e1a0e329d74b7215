"""The collector's Docker source alone in its own process, scraping on a schedule; prints its cost as JSON.

The parent benchmark reads the JSON; run by hand it shows one node's overhead::

    python -m benchmarks.collector_probe --scrapes 3 --interval 2
"""

from __future__ import annotations

import argparse
import json
import resource
import time

from benchmarks import proc
from collector.settings import CollectorSettings
from collector.sources.docker import DockerSource


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scrapes", type=int, required=True)
    parser.add_argument("--interval", type=float, required=True)
    args = parser.parse_args()
    source = DockerSource.from_settings(CollectorSettings(node_name="kph9-bench", source="docker"))
    cpu_per_scrape: list[float] = []
    wall_per_scrape: list[float] = []
    containers: list[int] = []
    started_cpu = time.process_time()
    first = time.monotonic()
    try:
        for index in range(args.scrapes):
            delay = first + index * args.interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # the collector's schedule, not synchronisation
            cpu, wall = time.process_time(), time.perf_counter()
            scrape = source.collect()
            cpu_per_scrape.append(time.process_time() - cpu)
            wall_per_scrape.append(time.perf_counter() - wall)
            containers.append(len(scrape.containers))
        total_cpu = time.process_time() - started_cpu
        cached_inspects = len(source.inspect_cache)  # before close(), which empties it
    finally:
        source.close()
    print(
        json.dumps(
            {
                "containers": containers,
                "cpu_per_scrape": cpu_per_scrape,
                "wall_per_scrape": wall_per_scrape,
                "total_cpu": total_cpu,
                "rss_bytes": proc.rss_bytes_self(),
                "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "skipped_timeout": source.skipped_timeout,
                "cached_inspects": cached_inspects,
            }
        )
    )


if __name__ == "__main__":
    main()

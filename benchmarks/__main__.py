"""``python -m benchmarks [--quick] [--only NAMES]``: run the benchmarks, one line per measure."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmarks import api, collector, growth, influx, ingest, store
from benchmarks.report import Measure, header, load_average


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big and how long each benchmark runs."""

    collector_containers: int
    collector_scrapes: int
    collector_interval: float
    ingest_nodes: tuple[int, ...]
    ingest_rounds: int
    influx_nodes: int
    influx_rounds: int
    influx_pace_rounds: int
    influx_pace_interval: float
    api_nodes: int
    api_rounds: int
    query_nodes: tuple[int, ...]
    query_count: int
    range_reads: int


QUICK = Sizes(
    collector_containers=20,
    collector_scrapes=3,
    collector_interval=3.0,
    ingest_nodes=(100, 1000),
    ingest_rounds=3,
    influx_nodes=100,
    influx_rounds=3,
    influx_pace_rounds=3,
    influx_pace_interval=2.0,
    api_nodes=100,
    api_rounds=3,
    query_nodes=(100, 1000),
    query_count=30,
    range_reads=10,
)
FULL = Sizes(
    collector_containers=100,
    collector_scrapes=18,
    collector_interval=10.0,
    ingest_nodes=(100, 1000, 5000),
    ingest_rounds=4,
    influx_nodes=1000,
    influx_rounds=3,
    influx_pace_rounds=6,
    influx_pace_interval=10.0,
    api_nodes=1000,
    api_rounds=3,
    query_nodes=(100, 1000),
    query_count=200,
    range_reads=30,
)
TINY = Sizes(
    collector_containers=2,
    collector_scrapes=2,
    collector_interval=0.5,
    ingest_nodes=(2, 4),
    ingest_rounds=2,
    influx_nodes=2,
    influx_rounds=2,
    influx_pace_rounds=2,
    influx_pace_interval=0.5,
    api_nodes=2,
    api_rounds=2,
    query_nodes=(2,),
    query_count=2,
    range_reads=2,
)
"""For the smoke test: the format, not the numbers."""

INFLUX_URL = "http://127.0.0.1:8086"
NAMES = ("collector", "ingest", "growth", "store", "influx", "http", "query")
IN_PROCESS = ("ingest", "growth", "store")
"""Benchmarks that need no engine, no InfluxDB and no second process."""


def run(
    names: Sequence[str], sizes: Sizes, emit: Callable[[str], None], *, influx_url: str = INFLUX_URL
) -> None:
    """Run the named benchmarks at ``sizes``, passing every output line to ``emit``."""

    def show(measures: Sequence[Measure]) -> None:
        for measure in measures:
            emit(measure.line())

    base_rss = ingest.max_rss_bytes()
    if "collector" in names:
        show(
            collector.collector_measures(
                containers=sizes.collector_containers,
                scrapes=sizes.collector_scrapes,
                interval_seconds=sizes.collector_interval,
            )
        )
        emit(f"# load_average={load_average()}")
    if "ingest" in names or "growth" in names:
        runs = []
        for nodes in sizes.ingest_nodes:
            result = ingest.measure_ingest(nodes, rounds=sizes.ingest_rounds if nodes < 5000 else 2)
            runs.append(result)
            if "ingest" in names:
                show(ingest.ingest_measures(result))
        if "growth" in names and len(runs) >= 2:
            measures, formulas = growth.growth_measures(runs, base_rss)
            show(measures)
            for formula in formulas:
                emit(formula)
        emit(f"# load_average={load_average()}")
    if "store" in names:
        show(store.add_measures(nodes=sizes.ingest_nodes[0], rounds=sizes.ingest_rounds))
        show(store.pod_usage_measures(nodes=sizes.query_nodes[-1], queries=sizes.query_count))
        show(store.pod_view_measures(nodes=sizes.query_nodes[-1], rounds=sizes.ingest_rounds))
        emit(f"# load_average={load_average()}")
    if "influx" in names:
        show(
            influx.influx_measures(
                influx_url,
                nodes=sizes.influx_nodes,
                rounds=sizes.influx_rounds,
                pace_rounds=sizes.influx_pace_rounds,
                pace_interval=sizes.influx_pace_interval,
            )
        )
        emit(f"# load_average={load_average()}")
    if "http" in names:
        show(api.http_ingest_measures(nodes=sizes.api_nodes, rounds=sizes.api_rounds))
    if "http" in names or "query" in names:
        for nodes in sizes.query_nodes:
            show(api.pods_query_measures(nodes=nodes, queries=sizes.query_count))
        show(api.range_read_measures(reads=sizes.range_reads))
        emit(f"# load_average={load_average()}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="every benchmark short (under 5 minutes)")
    parser.add_argument(
        "--only", default=",".join(NAMES), help=f"comma-separated subset of {','.join(NAMES)}"
    )
    parser.add_argument("--influx-url", default=INFLUX_URL)
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    mode = "quick" if args.quick else "full"
    for line in header(mode):
        print(line, flush=True)
    started = time.monotonic()
    run(
        names, QUICK if args.quick else FULL, lambda line: print(line, flush=True), influx_url=args.influx_url
    )
    print(f"# done in {time.monotonic() - started:.0f} s, load_average={load_average()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Collector overhead on the real engine: ``N`` idle containers, the real Docker source in its own process
scraping them on its schedule; CPU seconds per scrape per container and resident memory.

Containers are named ``kph9-<n>`` (image ``kpulse-test/busybox:latest``) and removed afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import docker
import docker.errors

from benchmarks.report import Measure, mean

IMAGE = "kpulse-test/busybox:latest"
LABEL = "kpulse.bench"
_MIB = 1024 * 1024
TARGET_CPU_S_PER_SCRAPE_PER_CONTAINER = 0.1 / 100
"""1% of one core at 100 containers every 10 s: 0.1 CPU-s per scrape of 100 containers."""


@contextmanager
def running_containers(count: int) -> Iterator[list[str]]:
    """``count`` sleeping busybox containers, removed (forcibly) on the way out."""
    client = docker.from_env(timeout=120)
    ids: list[str] = []
    try:
        for index in range(count):
            container = client.containers.run(
                IMAGE,
                ["sleep", "1000000"],
                name=f"kph9-{os.getpid()}-{index}",
                labels={LABEL: "kph9"},
                detach=True,
            )
            ids.append(container.id or "")
        yield ids
    finally:
        for container_id in ids:
            with suppress(docker.errors.NotFound):
                client.api.remove_container(container_id, force=True)
        client.close()


def collector_measures(*, containers: int, scrapes: int, interval_seconds: float) -> list[Measure]:
    """Start ``containers`` containers, run the probe for ``scrapes`` scrapes, report its cost."""
    with running_containers(containers):
        env = {key: value for key, value in os.environ.items() if not key.startswith("KPULSE_")}
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "benchmarks.collector_probe",
                "--scrapes",
                str(scrapes),
                "--interval",
                str(interval_seconds),
            ],
            env=env,
            capture_output=True,
            check=True,
            timeout=scrapes * interval_seconds + 300,
        )
    report = json.loads(result.stdout.decode().strip().splitlines()[-1])
    seen = report["containers"]
    # The first scrape pays one-off costs (engine /info, thread start-up, every container's inspect, which is
    # then cached until an event or the max age): kept out of the steady value, printed on its own.
    steady = report["cpu_per_scrape"][1:] or report["cpu_per_scrape"]
    seen_steady = seen[1:] or seen
    per_container = mean(steady) / max(1.0, mean([float(n) for n in seen_steady]))
    prefix = f"collector.docker.c{containers}"
    return [
        Measure(f"{prefix}.containers_seen", min(seen), "containers"),
        Measure(f"{prefix}.scrapes", len(seen), "scrapes"),
        Measure(
            f"{prefix}.scrape_wall_s", mean(report["wall_per_scrape"][1:] or report["wall_per_scrape"]), "s"
        ),
        Measure(f"{prefix}.cpu_s_first_scrape", report["cpu_per_scrape"][0], "cpu-s"),
        Measure(f"{prefix}.cpu_s_per_scrape", mean(steady), "cpu-s"),
        Measure(
            f"{prefix}.cpu_s_per_scrape_per_container",
            per_container,
            "cpu-s",
            TARGET_CPU_S_PER_SCRAPE_PER_CONTAINER,
            "max",
        ),
        Measure(
            f"{prefix}.core_share_at_10s_100c",
            per_container * 100 / 10 * 100,
            "%",
            1.0,
            "max",
        ),
        Measure(f"{prefix}.rss", report["rss_bytes"] / _MIB, "MiB", 80, "max"),
        Measure(f"{prefix}.max_rss", report["max_rss_bytes"] / _MIB, "MiB", 80, "max"),
        Measure(f"{prefix}.skipped_timeout", report["skipped_timeout"], "containers"),
        Measure(f"{prefix}.cached_inspects", report["cached_inspects"], "containers"),
    ]

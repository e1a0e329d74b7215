"""The HTTP paths of a real aggregator process: gzip JSON ingest (validation + HTTP overhead), the
``kubectl top pods -A`` query with many pods tracked, and a one-hour model-API range read."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import requests

from benchmarks import proc
from benchmarks.report import Measure, percentile
from benchmarks.synthetic import SyntheticCluster
from tests.helpers import free_tcp_port, wait_until

_NS_PER_S = 1_000_000_000
INTERVAL_SECONDS = 10.0
CLIENTS = 4
"""Concurrent collectors posting (one connection each)."""


@dataclass(frozen=True, slots=True)
class Server:
    url: str
    process: subprocess.Popen[bytes]


@contextmanager
def aggregator_process(window_seconds: float = 900.0) -> Iterator[Server]:
    """``python -m benchmarks.serve`` on a free port, ready when ``/healthz`` answers; stopped afterwards."""
    port = free_tcp_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("KPULSE_")}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.serve",
            "--port",
            str(port),
            "--window-seconds",
            str(window_seconds),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the aggregator exited with {process.returncode}")
        try:
            return requests.get(f"{url}/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_until(ready, 60, "the benchmark aggregator never answered /healthz")
        yield Server(url, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _bodies(cluster: SyntheticCluster, rounds: int) -> list[list[bytes]]:
    """Gzip JSON bodies per round, as the collector's shipper sends them, the last round scraped now."""
    now = time.time_ns() // _NS_PER_S * _NS_PER_S
    rounds_bodies = []
    for index in range(rounds):
        scraped = now - int((rounds - 1 - index) * INTERVAL_SECONDS * _NS_PER_S)
        rounds_bodies.append(
            [
                gzip.compress(batch.model_dump_json(exclude_none=True).encode(), 1)
                for batch in cluster.scrape(scraped_at_ns=scraped)
            ]
        )
    return rounds_bodies


def _post_all(url: str, bodies: list[bytes], clients: int = CLIENTS) -> None:
    sessions = [requests.Session() for _ in range(clients)]

    def post(index: int) -> None:
        session = sessions[index % clients]
        response = session.post(
            f"{url}/api/v1/ingest",
            data=bodies[index],
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            timeout=60,
        )
        if response.status_code != 202:
            raise RuntimeError(f"ingest answered {response.status_code}: {response.text[:300]}")

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(post, range(len(bodies))))
    for session in sessions:
        session.close()


def api_measures(*, nodes: int, rounds: int, queries: int) -> list[Measure]:
    """HTTP ingest of ``nodes`` × 60 containers for ``rounds`` rounds, then the pods query ``queries`` times.

    The first round is a warm-up (no rates yet); the rest are timed.
    """
    cluster = SyntheticCluster(nodes=nodes, interval_seconds=INTERVAL_SECONDS, seed=21)
    pods = cluster.pod_count
    measures: list[Measure] = []
    with aggregator_process() as server:
        pid = server.process.pid
        idle_rss = proc.rss_bytes(pid)
        samples = 0
        wall = 0.0
        server_cpu = 0.0
        for index in range(rounds):
            # Built just before it is sent, scraped "now": the query below only serves fresh pods.
            round_bodies = _bodies(cluster, 1)[0]
            cpu_before, started = proc.cpu_seconds(pid), time.perf_counter()
            _post_all(server.url, round_bodies)
            if index == 0:
                continue  # warm-up round: first samples have no rates
            wall += time.perf_counter() - started
            server_cpu += proc.cpu_seconds(pid) - cpu_before
            samples += cluster.container_count
        loaded_rss = proc.rss_bytes(pid)

        latencies = []
        session = requests.Session()
        path = f"{server.url}/apis/metrics.k8s.io/v1beta1/pods"
        served = 0
        for _ in range(queries):
            began = time.perf_counter()
            response = session.get(path, timeout=60)
            latencies.append(time.perf_counter() - began)
            response.raise_for_status()
            served = len(response.json()["items"])
        session.close()

    prefix = f"aggregator.http.ingest.n{nodes}"
    measures += [
        Measure(f"{prefix}.container_samples_per_s", samples / wall if wall else 0.0, "samples/s"),
        Measure(f"{prefix}.server_cpu_us_per_sample", server_cpu / max(1, samples) * 1e6, "us"),
        Measure(
            f"{prefix}.samples_per_server_cpu_s", samples / server_cpu if server_cpu else 0.0, "samples/cpu-s"
        ),
        Measure(f"{prefix}.server_rss_idle", idle_rss / 2**20, "MiB"),
        Measure(f"{prefix}.server_rss_loaded", loaded_rss / 2**20, "MiB"),
        Measure(
            f"{prefix}.server_rss_per_container",
            (loaded_rss - idle_rss) / cluster.container_count / 1024,
            "KiB",
            10,
            "max",
        ),
    ]
    query = f"query.metrics_k8s.pods.p{pods}"
    measures += [
        # Fewer items than pods means the data went stale before the query: the latencies are then invalid.
        Measure(f"{query}.items", served, "pods", pods, "min"),
        Measure(f"{query}.latency_p50", percentile(latencies, 0.5) * 1000, "ms", 200, "max"),
        Measure(f"{query}.latency_p99", percentile(latencies, 0.99) * 1000, "ms", 200, "max"),
    ]
    return measures


def _rfc3339(ns: int) -> str:
    return datetime.fromtimestamp(ns / _NS_PER_S, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def range_read_measures(*, reads: int) -> list[Measure]:
    """A one-hour Heapster model read of one pod's CPU rate, served from a one-hour window."""
    cluster = SyntheticCluster(nodes=1, pods_per_node=1, interval_seconds=INTERVAL_SECONDS, seed=31)
    buckets = int(3600 / INTERVAL_SECONDS) + 1
    # A little more than an hour, so the whole hour is in memory and no InfluxDB history is asked.
    with aggregator_process(window_seconds=3720.0) as server:
        # One node's batches in order, as its one collector sends them (concurrent posts would reorder them).
        bodies = [body for round_bodies in _bodies(cluster, buckets) for body in round_bodies]
        _post_all(server.url, bodies, clients=1)
        namespace, pod = cluster.first_pod()
        end = time.time_ns()
        params = {"start": _rfc3339(end - 3600 * _NS_PER_S), "end": _rfc3339(end)}
        path = f"{server.url}/api/v1/model/namespaces/{namespace}/pods/{pod}/metrics/cpu/usage_rate"
        session = requests.Session()
        latencies = []
        values = 0
        for _ in range(reads):
            began = time.perf_counter()
            response = session.get(path, params=params, timeout=60)
            latencies.append(time.perf_counter() - began)
            response.raise_for_status()
            values = len(response.json()["metrics"])
        session.close()
    return [
        Measure("query.model.pod_range_1h.values", values, "values"),
        Measure("query.model.pod_range_1h.latency_p50", percentile(latencies, 0.5) * 1000, "ms"),
        Measure("query.model.pod_range_1h.latency_p99", percentile(latencies, 0.99) * 1000, "ms", 200, "max"),
    ]

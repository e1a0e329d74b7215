"""The HTTP paths of a real aggregator process: gzip JSON ingest (validation + HTTP overhead), the
``kubectl top pods -A`` query with many pods tracked, and a one-hour model-API range read.

The pods query runs against a server that fed its pods in-process (``serve --preload-nodes``) and is kept
fresh between queries, never during one: posting 30,000 pods over HTTP outlasted the freshness cut-off."""

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

import orjson
import requests

from benchmarks import proc
from benchmarks.report import Measure, percentile
from benchmarks.synthetic import NAMESPACES, SyntheticCluster
from tests.helpers import free_tcp_port, wait_until

_NS_PER_S = 1_000_000_000
INTERVAL_SECONDS = 10.0
CLIENTS = 4
"""Concurrent collectors posting (one connection each)."""
PODS_PER_NODE = 30
REFEED_AFTER_SECONDS = 1.5 * INTERVAL_SECONDS
"""The API serves a pod until its newest bucket start is 3 intervals old, so at least 2 intervals after its
scrape: feeding again at 1.5 leaves half an interval for a query to start, and halves the feeding."""
PRELOAD_SECONDS_PER_NODE = 0.3
"""Start-up allowance of a preloading server, generously: 1,000 nodes took about 10 s on 2 loaded cores."""


@dataclass(frozen=True, slots=True)
class Server:
    url: str
    process: subprocess.Popen[bytes]


@contextmanager
def aggregator_process(window_seconds: float = 900.0, *, preload_nodes: int = 0) -> Iterator[Server]:
    """``python -m benchmarks.serve`` on a free port, ready when ``/healthz`` answers; stopped afterwards.

    With ``preload_nodes`` the server feeds that many synthetic nodes in-process before it answers.
    """
    port = free_tcp_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("KPULSE_")}
    command = [
        sys.executable,
        "-m",
        "benchmarks.serve",
        "--port",
        str(port),
        "--window-seconds",
        str(window_seconds),
        "--interval-seconds",
        str(INTERVAL_SECONDS),
    ]
    if preload_nodes:
        command += ["--preload-nodes", str(preload_nodes), "--pods-per-node", str(PODS_PER_NODE)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the aggregator exited with {process.returncode}")
        try:
            return requests.get(f"{url}/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_until(
            ready,
            60 + preload_nodes * PRELOAD_SECONDS_PER_NODE,
            "the benchmark aggregator never answered /healthz",
            every_seconds=0.2,
        )
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


def http_ingest_measures(*, nodes: int, rounds: int) -> list[Measure]:
    """HTTP ingest of ``nodes`` × 60 containers for ``rounds`` rounds, 4 clients: rate, server CPU, RSS.

    The first round is a warm-up (no rates yet); the rest are timed.
    """
    cluster = SyntheticCluster(nodes=nodes, interval_seconds=INTERVAL_SECONDS, seed=21)
    with aggregator_process() as server:
        pid = server.process.pid
        idle_rss = proc.rss_bytes(pid)
        samples = 0
        wall = 0.0
        server_cpu = 0.0
        for index in range(rounds):
            round_bodies = _bodies(cluster, 1)[0]
            cpu_before, started = proc.cpu_seconds(pid), time.perf_counter()
            _post_all(server.url, round_bodies)
            if index == 0:
                continue  # warm-up round: first samples have no rates
            wall += time.perf_counter() - started
            server_cpu += proc.cpu_seconds(pid) - cpu_before
            samples += cluster.container_count
        loaded_rss = proc.rss_bytes(pid)

    prefix = f"aggregator.http.ingest.n{nodes}"
    return [
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


def pods_query_measures(*, nodes: int, queries: int) -> list[Measure]:
    """``GET /apis/metrics.k8s.io/v1beta1/pods`` ``queries`` times with ``nodes`` × 30 pods tracked, then the
    same for one namespace's pods (a tenth of them: what an HPA or ``kubectl top pods -n`` asks).

    Latency is the client's (request to whole body); server CPU is the server process's over each request.
    Before a query, a round is fed if the newest is getting old, so every query sees every pod fresh. The
    first all-pods list (``first_list``) also builds the server's pod-list view (``PodListView``): it is
    what a one-off ``kubectl top pods -A`` after minutes without one costs, and is reported apart from
    the percentiles of the lists after it.
    """
    pods = nodes * PODS_PER_NODE
    base = "/apis/metrics.k8s.io/v1beta1"
    with aggregator_process(preload_nodes=nodes) as server, requests.Session() as session:
        feed_timeout_s = 60 + nodes * PRELOAD_SECONDS_PER_NODE
        every = _timed_gets(server, session, f"{base}/pods", queries, feed_timeout_s)
        one = _timed_gets(server, session, f"{base}/namespaces/{NAMESPACES[0]}/pods", queries, feed_timeout_s)
    return [
        *_query_measures(f"query.metrics_k8s.pods.p{pods}", every, pods),
        *_query_measures(f"query.metrics_k8s.namespace_pods.p{pods}", one, pods // len(NAMESPACES)),
    ]


@dataclass(frozen=True, slots=True)
class _Timed:
    first_s: float
    """The first query's latency; not in ``latencies_s``."""
    latencies_s: list[float]
    server_cpu_s: float
    """Over ``latencies_s``' queries."""
    items: list[int]


def _timed_gets(
    server: Server, session: requests.Session, path: str, queries: int, feed_timeout_s: float
) -> _Timed:
    """``queries`` GETs of ``path``, feeding a round first whenever the newest is getting old."""
    pid = server.process.pid
    feed = f"{server.url}/bench/scrape"
    latencies: list[float] = []
    server_cpu = first_cpu = 0.0
    served: list[int] = []
    scraped_at_ns = session.get(feed, timeout=10).json()["scraped_at_ns"]
    for _ in range(queries + 1):
        if time.time_ns() - scraped_at_ns >= REFEED_AFTER_SECONDS * _NS_PER_S:
            fed = session.post(feed, timeout=feed_timeout_s)
            fed.raise_for_status()
            scraped_at_ns = fed.json()["scraped_at_ns"]
        cpu_before = proc.cpu_seconds(pid)
        began = time.perf_counter()
        response = session.get(f"{server.url}{path}", timeout=60)
        latencies.append(time.perf_counter() - began)
        server_cpu += proc.cpu_seconds(pid) - cpu_before
        if len(latencies) == 1:
            first_cpu = server_cpu
        response.raise_for_status()
        served.append(len(orjson.loads(response.content)["items"]))
    return _Timed(latencies[0], latencies[1:], server_cpu - first_cpu, served)


def _query_measures(prefix: str, timed: _Timed, expected_items: int) -> list[Measure]:
    return [
        # Fewer items than pods means some data went stale before a query: the latencies are then invalid.
        Measure(f"{prefix}.items", min(timed.items, default=0), "pods", expected_items, "min"),
        Measure(f"{prefix}.first_list", timed.first_s * 1000, "ms", 200, "max"),
        Measure(f"{prefix}.latency_p50", percentile(timed.latencies_s, 0.5) * 1000, "ms", 200, "max"),
        Measure(f"{prefix}.latency_p99", percentile(timed.latencies_s, 0.99) * 1000, "ms", 200, "max"),
        Measure(
            f"{prefix}.server_cpu_ms_per_query",
            timed.server_cpu_s / max(1, len(timed.latencies_s)) * 1000,
            "ms",
        ),
    ]


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

"""The kubelet source end to end: a real node's recorded payloads, replayed with known advances, through the
real collector and aggregator processes into the real InfluxDB.

No kubelet can run here, so a local HTTP server plays one (the read-only port's shape): each
``/stats/summary`` request gets the recorded capture with every cumulative counter advanced by a known
amount per request and every timestamp moved forward by a known step. The rates InfluxDB ends up holding
must equal advance / step (within 1%), at container, pod and node level, and the rollups must be sums.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from aggregator import catalog
from tests.e2e.conftest import CpuPlan, Service, _healthy, _service_env, _start_service
from tests.helpers import InfluxDatabases, InfluxV1, free_tcp_port, wait_until

pytestmark = pytest.mark.integration

CAPTURE = Path(__file__).resolve().parents[1] / "fixtures" / "kubelet" / "duckboat-01"
NODE = "duckboat-01"
STEP_SECONDS = 10
CPU_ADVANCE_NS = 2_500_000_000
"""Per step: 2.5 CPU-seconds in 10 s is 250 millicores, for every container, pod and the node."""
BYTES_ADVANCE = 1_000_000
"""Per step: 1 MB in 10 s is 100,000 bytes/s, received and sent, for every pod network and the node."""
MOVING_INTERFACES = frozenset({"eth0", "ens160"})
"""Only each pod's eth0 and the node's NIC move; a pod or node sums all its interfaces, so one must move."""
_BYTES = frozenset({"rxBytes", "txBytes"})


def advanced(node: Any, steps: int) -> Any:
    """The capture ``steps`` requests later: counters advanced, sample times moved, start times kept."""
    if isinstance(node, list):
        return [advanced(item, steps) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    moving = node.get("name") in MOVING_INTERFACES
    for key, value in node.items():
        if key == "usageCoreNanoSeconds" and isinstance(value, int):
            out[key] = value + steps * CPU_ADVANCE_NS
        elif key in _BYTES and moving and isinstance(value, int):
            out[key] = value + steps * BYTES_ADVANCE
        elif key == "time" and isinstance(value, str):
            moved = datetime.fromisoformat(value) + timedelta(seconds=steps * STEP_SECONDS)
            out[key] = moved.isoformat().replace("+00:00", "Z")
        else:
            out[key] = advanced(value, steps)
    return out


class ReplayingKubelet:
    """A local HTTP kubelet serving the capture, advanced one step per summary request."""

    def __init__(self) -> None:
        summary = json.loads((CAPTURE / "stats-summary.json").read_text())
        pods = (CAPTURE / "pods.json").read_bytes()
        self.requests = 0
        replay = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/stats/summary":
                    body = json.dumps(advanced(summary, replay.requests)).encode()
                    replay.requests += 1
                elif self.path == "/pods":
                    body = pods
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def replay(influx_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxV1]:
    kubelet = ReplayingKubelet()
    databases = InfluxDatabases(influx_url)
    services: list[Service] = []
    logs = tmp_path_factory.mktemp("kubelet-replay")
    try:
        database = databases.create("kubelet")
        port = free_tcp_port()
        env = _service_env(
            port=port, database=database, influx_url=influx_url, token=secrets.token_urlsafe(24)
        )
        env.update(
            {
                "KPULSE_COLLECTOR_SOURCE": "kubelet",
                "KPULSE_COLLECTOR_KUBELET_URL": kubelet.url,
                "KPULSE_COLLECTOR_NODE_NAME": NODE,
            }
        )
        # No burner here: the services may run on whatever CPUs this process has (the Docker-host scenario
        # may hold the other one while it is up).
        cpus = CpuPlan(burner=-1, rest=frozenset(os.sched_getaffinity(0)))
        aggregator = _start_service("aggregator", env, logs, cpus)
        services.append(aggregator)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _healthy(url, aggregator), 60, aggregator.log_tail)
        services.append(_start_service("collector", env, logs, cpus))
        influx = InfluxV1(influx_url, database)

        def three_rated_buckets() -> bool:
            for service in services:
                service.assert_running()
            rows = influx.rows('SELECT count("cpu_usage_millicores") FROM "node"')
            return bool(rows) and rows[0]["count"] >= 3

        wait_until(
            three_rated_buckets,
            120,
            lambda: "\n".join(f"--- {s.name}\n{s.log_tail()}" for s in services),
            every_seconds=0.5,
        )
        yield influx
    finally:
        for service in reversed(services):
            service.stop()
        kubelet.close()
        databases.drop_all()


def _rates(influx: InfluxV1, measurement: str, field: str) -> list[dict[str, Any]]:
    return [
        row
        for row in influx.rows(f'SELECT "{field}" FROM "{measurement}" GROUP BY *')
        if row[field] is not None
    ]


def test_container_cpu_rate_is_the_known_advance(replay: InfluxV1) -> None:
    rows = _rates(replay, "container", catalog.CPU_USAGE_MILLICORES.name)
    expected = CPU_ADVANCE_NS / STEP_SECONDS / 1e6
    assert len({row["container"] for row in rows}) >= 10, "too few running containers in the capture made it"
    off = [row for row in rows if abs(row[catalog.CPU_USAGE_MILLICORES.name] - expected) > 0.01 * expected]
    assert not off, off[:5]


def test_pod_cpu_is_the_sum_and_network_the_known_advance(replay: InfluxV1) -> None:
    cpu = catalog.CPU_USAGE_MILLICORES.name
    containers: dict[tuple[str, str, int], float] = {}
    for row in _rates(replay, "container", cpu):
        key = (row["namespace"], row["pod"], row["time"])
        containers[key] = containers.get(key, 0.0) + row[cpu]
    pods = _rates(replay, "pod", cpu)
    assert pods
    for row in pods:
        assert row[cpu] == pytest.approx(containers[(row["namespace"], row["pod"], row["time"])], rel=1e-9)
    expected = BYTES_ADVANCE / STEP_SECONDS
    for field in (catalog.NETWORK_RX_BYTES_PER_SECOND.name, catalog.NETWORK_TX_BYTES_PER_SECOND.name):
        rows = _rates(replay, "pod", field)
        assert rows, f"no pod has {field}"
        assert all(abs(row[field] - expected) <= 0.01 * expected for row in rows), rows[:5]


def test_node_rates_are_the_known_advance(replay: InfluxV1) -> None:
    (row,) = replay.rows(
        f'SELECT last("{catalog.CPU_USAGE_MILLICORES.name}") AS cpu, '
        f'last("{catalog.NETWORK_RX_BYTES_PER_SECOND.name}") AS rx FROM "node" WHERE "node" = \'{NODE}\''
    )
    assert row["cpu"] == pytest.approx(CPU_ADVANCE_NS / STEP_SECONDS / 1e6, rel=0.01)
    assert row["rx"] == pytest.approx(BYTES_ADVANCE / STEP_SECONDS, rel=0.01)


def test_requests_and_restarts_reach_influxdb_and_the_catalog_covers_every_field(replay: InfluxV1) -> None:
    for level in catalog.Level:
        written = {row["fieldKey"] for row in replay.rows(f'SHOW FIELD KEYS FROM "{level}"')}
        allowed = {metric.name for metric in catalog.fields_for(level)}
        assert written <= allowed, f"{level}: not in the catalog: {written - allowed}"
    container_fields = {row["fieldKey"] for row in replay.rows('SHOW FIELD KEYS FROM "container"')}
    kubelet_only = {
        catalog.CPU_REQUEST_MILLICORES.name,
        catalog.MEMORY_REQUEST_BYTES.name,
        catalog.RESTART_COUNT.name,
        catalog.FS_USAGE_BYTES.name,
    }
    assert kubelet_only <= container_fields
    workloads = replay.rows('SHOW TAG VALUES FROM "pod" WITH KEY = "workload_kind"')
    assert {"Deployment", "DaemonSet"} <= {row["value"] for row in workloads}

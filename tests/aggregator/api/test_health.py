"""``/healthz`` and ``/readyz``: alive always; ready only when what is accepted can reach InfluxDB."""

from __future__ import annotations

import pytest
import requests

from aggregator.api import create_app
from aggregator.points import Point
from aggregator.settings import AggregatorSettings
from aggregator.sinks.buffered import BufferedWriter
from aggregator.sinks.influx_v1 import InfluxV1Backend
from aggregator.sinks.memory import MemorySink
from tests.aggregator.servers import serve
from tests.helpers import free_tcp_port, wait_until


def _writer(url: str, database: str, **options: object) -> BufferedWriter:
    backend = InfluxV1Backend(requests.Session(), url=url, database=database, timeout_seconds=2)
    defaults: dict[str, object] = {
        "flush_interval_seconds": 0.05,
        "retry_initial_seconds": 0.05,
        "retry_max_seconds": 0.1,
    }
    return BufferedWriter(backend, **{**defaults, **options})  # type: ignore[arg-type]


def test_healthz_answers_while_the_process_runs() -> None:
    with serve(create_app(AggregatorSettings(), sink=MemorySink())) as url:
        response = requests.get(f"{url}/healthz", timeout=5)

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


def test_readyz_is_ready_with_a_sink_that_has_nothing_to_reach() -> None:
    with serve(create_app(AggregatorSettings(), sink=MemorySink())) as url:
        response = requests.get(f"{url}/readyz", timeout=5)

    assert response.status_code == 200
    assert response.json()["ready"] is True


@pytest.mark.integration
def test_readyz_pings_influxdb_before_the_first_write_and_trusts_recent_writes(
    influx_url: str, influx_db: str
) -> None:
    writer = _writer(influx_url, influx_db)
    with serve(create_app(AggregatorSettings(), sink=writer)) as url:
        before = requests.get(f"{url}/readyz", timeout=5)
        writer.write([Point("m", {}, {"v": 1.0}, 1)])
        assert writer.flush(timeout_seconds=10)
        after = requests.get(f"{url}/readyz", timeout=5)
    writer.close()

    assert before.status_code == 200
    assert before.json()["last_write_success_ns"] is None
    assert after.status_code == 200
    assert after.json()["last_write_success_ns"] is not None


@pytest.mark.integration
def test_readyz_is_503_with_the_reason_when_influxdb_is_unreachable() -> None:
    writer = _writer(f"http://127.0.0.1:{free_tcp_port()}", "kph3_never_created")
    with serve(create_app(AggregatorSettings(), sink=writer)) as url:
        idle = requests.get(f"{url}/readyz", timeout=10)
        writer.write([Point("m", {}, {"v": 1.0}, 1)])
        wait_until(lambda: writer.stats().write_errors, 10, "the write was not attempted")
        failing = requests.get(f"{url}/readyz", timeout=10)
        writer.close(timeout_seconds=0.1)  # before the app's shutdown would wait to drain it

    assert idle.status_code == 503
    assert idle.json()["reason"].startswith("InfluxDB unreachable: ")
    assert failing.status_code == 503
    assert "unreachable" in failing.json()["reason"]
    assert failing.json()["buffer_points"] == 1


@pytest.mark.integration
def test_readyz_is_503_when_the_write_buffer_is_over_90_percent_full() -> None:
    writer = _writer(
        f"http://127.0.0.1:{free_tcp_port()}", "kph3_never_created", max_points=10, batch_points=100
    )
    with serve(create_app(AggregatorSettings(), sink=writer)) as url:
        writer.write([Point("m", {}, {"v": float(i)}, i) for i in range(10)])
        response = requests.get(f"{url}/readyz", timeout=10)
        writer.close(timeout_seconds=0.1)  # before the app's shutdown would wait to drain it

    assert response.status_code == 503
    assert response.json()["reason"].startswith("write buffer 100% full (10 of 10 points)")

"""``python -m aggregator`` as a real process: bad settings exit 2 naming the variable; a good run serves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from aggregator.sinks.influx_v1 import InfluxV1Backend
from tests.aggregator.api.batches import gzip_body, make_batch
from tests.helpers import free_tcp_port, wait_until

REPO = Path(__file__).resolve().parents[2]


def _env(**variables: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("KPULSE_")}
    return {**env, **variables}


def _run(**variables: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aggregator"],
        cwd=REPO,
        env=_env(**variables),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {"KPULSE_AGGREGATOR_PORT": "70000"},
            "invalid setting KPULSE_AGGREGATOR_PORT: Input should be less than or equal to 65535",
        ),
        ({"KPULSE_AGGREGATOR_MAX_BODY_BYTES": "lots"}, "invalid setting KPULSE_AGGREGATOR_MAX_BODY_BYTES:"),
        ({"KPULSE_AGGREGATOR_INFLUX_API": "v2"}, "KPULSE_AGGREGATOR_INFLUX_TOKEN"),
    ],
)
def test_a_bad_setting_exits_2_naming_the_variable_without_a_traceback(
    variables: dict[str, str], expected: str
) -> None:
    result = _run(**variables)

    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def aggregator_process(influx_url: str, influx_db: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_tcp_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "aggregator"],
        cwd=REPO,
        env=_env(
            KPULSE_AGGREGATOR_PORT=str(port),
            KPULSE_AGGREGATOR_INFLUX_URL=influx_url,
            KPULSE_AGGREGATOR_INFLUX_DATABASE=influx_db,
        ),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def _answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.integration
def test_the_service_warns_without_a_token_serves_and_drains_to_influxdb_on_sigterm(
    aggregator_process: tuple[subprocess.Popen[str], str], influx_url: str, influx_db: str
) -> None:
    process, url = aggregator_process
    wait_until(lambda: _answers(url) or process.poll() is not None, 30, "the aggregator did not start")
    assert process.poll() is None

    response = requests.post(
        f"{url}/api/v1/ingest",
        data=gzip_body(make_batch(containers=3)),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        timeout=10,
    )
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)

    assert response.status_code == 202, response.text
    # uvicorn re-raises the SIGTERM it handled once shutdown (and our drain) completed.
    assert process.returncode in (0, -signal.SIGTERM), stderr
    assert "Application shutdown complete" in stderr
    assert "KPULSE_INGEST_TOKEN is unset: ingest accepts loopback clients only" in stderr
    assert all(line[:4].isdigit() for line in stderr.splitlines()), "every log event is one line"
    with requests.Session() as session:
        series = InfluxV1Backend(session, url=influx_url, database=influx_db).query(
            'SELECT count(memory_usage_bytes) FROM "container"'
        )
    assert series[0].values[0][1] == 3

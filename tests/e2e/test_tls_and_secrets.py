"""HTTPS between real processes, and secrets kept out of logs and ``/metrics``.

``python -m aggregator`` serves HTTPS with a certificate signed by a throwaway CA made here; a real
``python -m collector`` (Docker source, the local engine) trusts that CA through
``KPULSE_COLLECTOR_AGGREGATOR_CA_FILE`` and delivers its batches. Both run at DEBUG with a known ingest
token, query token and InfluxDB password, none of which may show up in their logs or in ``/metrics``.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.helpers import InfluxDatabases, free_tcp_port, stop_process, tail, wait_until
from tests.pki import TestCa

pytestmark = pytest.mark.integration

DEADLINE_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path


def make_pki(directory: Path) -> Pki:
    """A CA and a server certificate for 127.0.0.1 / localhost signed by it, as PEM files."""
    ca = TestCa("kpulse test CA")
    server = ca.issue(directory, "kpulse-aggregator", client=False, hosts=("localhost", "127.0.0.1"))
    return Pki(ca.write(directory), server.cert_file, server.key_file)


@dataclass(slots=True)
class Running:
    url: str
    pki: Pki
    secrets: dict[str, str]
    logs: dict[str, Path]
    processes: dict[str, subprocess.Popen[bytes]]

    def log_text(self) -> str:
        return "\n".join(path.read_text(errors="replace") for path in self.logs.values())

    def assert_running(self) -> None:
        for name, process in self.processes.items():
            assert process.poll() is None, f"{name} exited {process.returncode}:\n{tail(self.logs[name])}"


def _accepted(url: str, ca_file: Path) -> float:
    try:
        text = requests.get(f"{url}/metrics", verify=str(ca_file), timeout=5).text
    except requests.RequestException:
        return 0.0
    found = re.search(r'kpulse_aggregator_batches_received_total\{outcome="accepted"\} (\S+)', text)
    return float(found.group(1)) if found else 0.0


@pytest.fixture(scope="module")
def running(
    influx_url: str, docker_client: object, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    scratch = tmp_path_factory.mktemp("tls")
    pki = make_pki(scratch)
    port = free_tcp_port()
    url = f"https://127.0.0.1:{port}"
    known = {
        "ingest token": "ingest-" + secrets.token_urlsafe(18),
        "query token": "query-" + secrets.token_urlsafe(18),
        "influx password": "influx-" + secrets.token_urlsafe(18),
    }
    databases = InfluxDatabases(influx_url)
    database = databases.create("tls")
    env = {key: value for key, value in os.environ.items() if not key.startswith("KPULSE_")}
    env.update(
        {
            "KPULSE_INGEST_TOKEN": known["ingest token"],
            "KPULSE_AGGREGATOR_QUERY_TOKEN": known["query token"],
            "KPULSE_AGGREGATOR_INFLUX_URL": influx_url,
            "KPULSE_AGGREGATOR_INFLUX_DATABASE": database,
            "KPULSE_AGGREGATOR_INFLUX_USERNAME": "kpulse",
            "KPULSE_AGGREGATOR_INFLUX_PASSWORD": known["influx password"],
            "KPULSE_AGGREGATOR_PORT": str(port),
            "KPULSE_AGGREGATOR_RESOLUTION_SECONDS": "1",
            "KPULSE_AGGREGATOR_TLS_CERT_FILE": str(pki.cert_file),
            "KPULSE_AGGREGATOR_TLS_KEY_FILE": str(pki.key_file),
            "KPULSE_AGGREGATOR_LOG_LEVEL": "DEBUG",
            "KPULSE_COLLECTOR_SOURCE": "docker",
            "KPULSE_COLLECTOR_INTERVAL_SECONDS": "1",
            "KPULSE_COLLECTOR_NODE_NAME": "tls-node",
            "KPULSE_COLLECTOR_AGGREGATOR_URL": url,
            "KPULSE_COLLECTOR_AGGREGATOR_CA_FILE": str(pki.ca_file),
            "KPULSE_COLLECTOR_LOG_LEVEL": "DEBUG",
        }
    )
    processes: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    try:
        for name in ("aggregator", "collector"):
            logs[name] = scratch / f"{name}.log"
            with logs[name].open("wb") as out:
                processes[name] = subprocess.Popen(
                    [sys.executable, "-m", name], env=env, stdout=out, stderr=subprocess.STDOUT
                )
        state = Running(url, pki, known, logs, processes)
        yield state
    finally:
        for process in processes.values():
            stop_process(process, 20)
        databases.drop_all()


def test_the_collector_delivers_to_the_aggregator_over_https_trusting_its_ca(running: Running) -> None:
    def delivered() -> bool:
        running.assert_running()
        return _accepted(running.url, running.pki.ca_file) >= 2

    wait_until(
        delivered,
        DEADLINE_SECONDS,
        lambda: f"no batch accepted over HTTPS; logs:\n{running.log_text()[-4000:]}",
        every_seconds=0.5,
    )
    nodes = requests.get(
        f"{running.url}/api/v1/model/nodes/",
        headers={"Authorization": f"Bearer {running.secrets['query token']}"},
        verify=str(running.pki.ca_file),
        timeout=5,
    )
    assert nodes.status_code == 200
    assert "tls-node" in nodes.json()


def test_plain_http_and_an_untrusted_certificate_are_refused(running: Running) -> None:
    wait_until(lambda: _accepted(running.url, running.pki.ca_file) >= 1, DEADLINE_SECONDS, "not serving")
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{running.url}/healthz", timeout=5)  # the system CAs do not know ours
    with pytest.raises(requests.ConnectionError):
        requests.get(running.url.replace("https://", "http://") + "/healthz", timeout=5)


def test_no_secret_appears_in_the_logs_or_in_metrics(running: Running) -> None:
    wait_until(lambda: _accepted(running.url, running.pki.ca_file) >= 2, DEADLINE_SECONDS, "no batches")
    # A refused request with a wrong token must not echo what it was sent, nor what was expected.
    wrong = requests.post(
        f"{running.url}/api/v1/ingest",
        data=b"{}",
        headers={"Authorization": "Bearer not-the-token"},
        verify=str(running.pki.ca_file),
        timeout=5,
    )
    assert wrong.status_code == 401
    metrics = requests.get(f"{running.url}/metrics", verify=str(running.pki.ca_file), timeout=5).text
    logs = running.log_text()

    assert "DEBUG" in logs  # the most talkative level really ran
    for what, secret in running.secrets.items():
        assert secret not in logs, f"the {what} appears in a log"
        assert secret not in metrics, f"the {what} appears in /metrics"
        assert secret not in wrong.text

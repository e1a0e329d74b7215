"""Fault-test fixtures: an InfluxDB of the test's own (killed and restarted at will) and aggregator processes.

The system InfluxDB other tests use is never touched: ``own_influxd`` runs a private ``influxd`` on free
ports with its data under the test's temporary directory, so stopping it is safe on a shared machine.
``AggregatorProcess`` runs ``python -m aggregator`` as a real subprocess that tests can SIGKILL and start
again on the same port and spool directory.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from tests.conftest import fresh_database, integration_disabled
from tests.helpers import InfluxV1, free_tcp_port, stop_process, tail, wait_until

START_DEADLINE_SECONDS = 60.0
STOP_DEADLINE_SECONDS = 20.0


@dataclass(slots=True)
class OwnInfluxd:
    """A private ``influxd`` (own config, dirs and ports) that a test may stop, kill and start again."""

    root: Path
    http_port: int = field(default_factory=free_tcp_port)
    rpc_port: int = field(default_factory=free_tcp_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log(self) -> Path:
        return self.root / "influxd.log"

    def write_config(self) -> Path:
        config = self.root / "influxd.conf"
        config.write_text(
            f"""reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"

[meta]
  dir = "{self.root / "meta"}"

[data]
  dir = "{self.root / "data"}"
  wal-dir = "{self.root / "wal"}"
  query-log-enabled = false

[retention]
  enabled = false

[monitor]
  store-enabled = false

[http]
  bind-address = "127.0.0.1:{self.http_port}"
  log-enabled = false

[continuous_queries]
  enabled = false
"""
        )
        return config

    def start(self) -> None:
        """Start (or start again, on the same dirs and ports) and wait until /ping answers."""
        assert self.process is None or self.process.poll() is not None, "influxd is already running"
        binary = shutil.which("influxd")
        if binary is None:
            pytest.fail("influxd not found: install InfluxDB 1.x (./scripts/test does)")
        config = self.write_config()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [binary, "-config", str(config)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        influx = InfluxV1(self.url)

        def answers() -> bool:
            assert self.process is not None
            code = self.process.poll()
            assert code is None, f"influxd exited with {code}:\n{tail(self.log, 40)}"
            return influx.ping()

        wait_until(answers, START_DEADLINE_SECONDS, lambda: f"own influxd never answered:\n{tail(self.log)}")

    def kill(self) -> None:
        """SIGKILL: the outage starts without InfluxDB flushing anything."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_DEADLINE_SECONDS)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after the deadline."""
        if self.process is not None:
            stop_process(self.process, STOP_DEADLINE_SECONDS)


@pytest.fixture
def database(influx_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database for one fault test (each restarts engines or aggregators: nothing is shared)."""
    yield from fresh_database(influx_url, request)


@pytest.fixture
def own_influxd(tmp_path: Path) -> Iterator[OwnInfluxd]:
    """A running private InfluxDB 1.x for one test; stopped afterwards whatever the test did to it."""
    if integration_disabled():
        pytest.skip("KPULSE_SKIP_INTEGRATION=1")
    server = OwnInfluxd(tmp_path / "influxd")
    server.root.mkdir()
    server.start()
    yield server
    server.stop()


@dataclass(slots=True)
class AggregatorProcess:
    """``python -m aggregator`` with ``env``; started again on the same port and spool after a kill."""

    env: dict[str, str]
    log: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and wait until /healthz answers."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "aggregator"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def healthy() -> bool:
            assert self.process is not None
            code = self.process.poll()
            assert code is None, f"aggregator exited with {code}:\n{tail(self.log, 60)}"
            try:
                return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(healthy, START_DEADLINE_SECONDS, lambda: f"aggregator never healthy:\n{tail(self.log)}")

    def kill(self) -> None:
        """SIGKILL, no chance to drain."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(STOP_DEADLINE_SECONDS)

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after the deadline; the exit status."""
        if self.process is None:
            return None
        return stop_process(self.process, STOP_DEADLINE_SECONDS)

    def rss_bytes(self) -> int:
        """Resident set size now, from /proc (bytes)."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS in /proc status")

    def metrics(self) -> dict[str, float]:
        """Unlabelled samples of ``/metrics`` by name."""
        text = requests.get(f"{self.url}/metrics", timeout=5).text
        found: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("#") or "{" in line or not line.strip():
                continue
            name, _, value = line.partition(" ")
            found[name] = float(value)
        return found


@pytest.fixture
def make_aggregator(tmp_path: Path) -> Iterator[Callable[..., AggregatorProcess]]:
    """Makes aggregator processes (``make(influx_url, spool_dir, **settings)``); stops them all after."""
    started: list[AggregatorProcess] = []

    def make(influx_url: str, spool_dir: Path, **settings: str) -> AggregatorProcess:
        port = free_tcp_port()
        env = {key: value for key, value in os.environ.items() if not key.startswith("KPULSE_")}
        env.update(
            {
                "KPULSE_AGGREGATOR_HOST": "127.0.0.1",
                "KPULSE_AGGREGATOR_PORT": str(port),
                "KPULSE_AGGREGATOR_INFLUX_URL": influx_url,
                "KPULSE_AGGREGATOR_INFLUX_DATABASE": "kpulse_faults",
                "KPULSE_AGGREGATOR_INFLUX_TIMEOUT_SECONDS": "3",
                "KPULSE_AGGREGATOR_SPOOL_DIR": str(spool_dir),
                "KPULSE_AGGREGATOR_FLUSH_INTERVAL_SECONDS": "0.5",
                "KPULSE_AGGREGATOR_CLUSTER_NAME": "faults",
            }
        )
        env.update({f"KPULSE_AGGREGATOR_{key.upper()}": value for key, value in settings.items()})
        aggregator = AggregatorProcess(env=env, log=tmp_path / f"aggregator-{len(started)}.log", port=port)
        started.append(aggregator)
        return aggregator

    yield make
    for aggregator in started:
        aggregator.stop()

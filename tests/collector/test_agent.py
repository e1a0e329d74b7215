"""The agent: scrapes land on multiples of the interval, the aggregator's buckets; a failing source is logged
by the agent alone, one line per failure episode and one when the source is readable again.

The failing sources are real: the kubelet source against the fake kubelet (tests/collector/sources/
fake_kubelet.py) told to answer 500 or garbage, and the Docker source pointed at a socket path where the
real engine's socket appears only later.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import docker
import pytest
import requests

from collector.agent import Agent, next_aligned
from collector.sources.docker import DockerSource
from collector.sources.kubelet import KubeletSource
from collector.wire import Batch
from tests.collector.sources.conftest import sdk_socket_leak_tolerated
from tests.collector.sources.fake_kubelet import NODE, FakeKubelet, kubelet_files, serving
from tests.conftest import DEFAULT_DOCKER_HOST

INTERVAL_SECONDS = 10.0


@pytest.mark.parametrize(
    ("now", "interval", "expected"),
    [(1000.0, 10, 1010.0), (1003.2, 10, 1010.0), (1009.999, 10, 1010.0), (7.1, 2.5, 7.5), (60.0, 15, 75.0)],
)
def test_next_aligned_is_the_next_multiple_of_the_interval(
    now: float, interval: float, expected: float
) -> None:
    assert next_aligned(interval, now=now).timestamp() == pytest.approx(expected)


def _logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, int, str]]:
    """Every line the collector's loggers wrote at INFO and above: (logger, level, message)."""
    return [
        (record.name, record.levelno, record.getMessage())
        for record in caplog.records
        if record.name.startswith("collector") and record.levelno >= logging.INFO
    ]


def test_a_failing_kubelet_is_logged_once_per_episode_and_once_when_readable_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    batches: list[Batch] = []
    with serving(FakeKubelet(files=kubelet_files(), token=None), None) as fake:
        source = KubeletSource(requests.Session(), base_url=fake.url, node_name=NODE, token_file=None)
        agent = Agent(source, batches.append, node_name=NODE, interval_seconds=INTERVAL_SECONDS)
        try:
            with caplog.at_level(logging.DEBUG, logger="collector"):
                # Three episodes: 500s, then garbage (another cause), then 500 again after a recovery.
                for mode in ("500", "500", "500", "garbage", "garbage", "ok", "ok", "500", "500"):
                    fake.mode = mode
                    agent.tick()
        finally:
            source.close()

    lines = _logged(caplog)
    assert [(name, level) for name, level, _ in lines] == [
        ("collector.agent", logging.ERROR),
        ("collector.agent", logging.ERROR),
        ("collector.agent", logging.INFO),
        ("collector.agent", logging.ERROR),
    ]
    first, second, recovered, third = (message for _, _, message in lines)
    for failure in (first, third):
        assert f"kubelet: HTTP 500 from {fake.url}/stats/summary" in failure
    assert (
        f"kubelet: the answer from {fake.url}/stats/summary is not a valid /stats/summary document" in second
    )
    assert all("will keep trying every 10s" in failure for failure in (first, second, third))
    assert recovered == "kubelet source readable again after 5 failed scrape(s)"
    assert len(batches) == 2
    assert (agent.stats.scrapes, agent.stats.scrape_failures) == (9, 7)
    # The repeats are there for whoever turns on debug, and only there.
    repeats = [r for r in caplog.records if r.levelno == logging.DEBUG and "scrape failed again" in r.message]
    assert len(repeats) == 4


def _drop_tracebacks(records: list[logging.LogRecord]) -> None:
    # The SDK leaves a failed connect's socket to its frame, which the logged error's traceback keeps
    # alive as long as the log records: let go of the frames so the sockets are collected right here.
    for record in records:
        for arg in record.args if isinstance(record.args, tuple) else ():
            error = arg
            while isinstance(error, BaseException):
                error.__traceback__ = None
                error = error.__cause__ or error.__context__


@pytest.mark.integration
def test_an_unreachable_docker_engine_is_logged_once_and_once_when_it_answers(
    docker_client: docker.DockerClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = os.environ.get("DOCKER_HOST", DEFAULT_DOCKER_HOST)  # the engine docker_client found answering
    if not engine.startswith("unix://"):
        pytest.skip(f"the engine is not on a local socket: {engine}")
    socket_path = tmp_path / "engine.sock"
    client = docker.APIClient(base_url=f"unix://{socket_path}", version="1.41", timeout=5)
    source = DockerSource(
        client, node_name="test-node", timeout_seconds=5, engine_url=f"unix://{socket_path}"
    )
    batches: list[Batch] = []
    agent = Agent(source, batches.append, node_name="test-node", interval_seconds=INTERVAL_SECONDS)
    with sdk_socket_leak_tolerated():
        try:
            with caplog.at_level(logging.DEBUG, logger="collector"):
                for _ in range(3):
                    agent.tick()
                # The engine's socket appears where the source looks (an engine started after the collector).
                socket_path.symlink_to(engine.removeprefix("unix://"))
                agent.tick()
        finally:
            source.close()
        lines = _logged(caplog)
        _drop_tracebacks(caplog.records)

    (failed, recovered) = lines
    assert failed[:2] == ("collector.agent", logging.ERROR)
    assert f"docker: cannot reach the engine at unix://{socket_path}" in failed[2]
    assert recovered == (
        "collector.agent",
        logging.INFO,
        "docker source readable again after 3 failed scrape(s)",
    )
    assert len(batches) == 1

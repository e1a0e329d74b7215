"""EngineClient on the real engine: the cheap stats path answers as the SDK does; connections are reused."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
import pytest
from docker.errors import NotFound

from collector.sources.docker_client import EngineClient
from collector.sources.docker_parse import ContainerStats, parse_stats
from tests.collector.sources.conftest import StartContainer, new_api_client

SLEEP = ["sleep", "100000"]


class UnixConnects:
    """Counts this process's connects to Unix sockets (``socket.connect`` audit events), while enabled."""

    _lock = threading.Lock()
    _installed = False
    _enabled = False
    count = 0

    @classmethod
    def _hook(cls, event: str, args: tuple[Any, ...]) -> None:
        if cls._enabled and event == "socket.connect" and isinstance(args[1], str | bytes):
            with cls._lock:
                cls.count += 1

    @classmethod
    def during(cls, work: Any) -> int:
        """Run ``work()`` and return how many Unix-socket connects it made."""
        if not cls._installed:
            sys.addaudithook(cls._hook)  # audit hooks stay for the process: the flag keeps it idle
            cls._installed = True
        cls.count, cls._enabled = 0, True
        try:
            work()
        finally:
            cls._enabled = False
        return cls.count


@pytest.mark.integration
def test_stats_are_the_engines_one_shot_stats(docker_api: Any, start_container: StartContainer) -> None:
    container_id = start_container("stats", SLEEP)
    client = EngineClient(new_api_client(), pool_size=4)
    try:
        first = client.stats(container_id, stream=False, one_shot=True)
        second = client.stats(container_id, stream=False, one_shot=True)  # the prepared request, again
    finally:
        client.close()
    through_sdk = docker_api.stats(container_id, stream=False, one_shot=True)
    readings = []
    for payload in (first, second):
        assert payload["id"] == container_id
        assert set(payload) == set(through_sdk)
        assert payload["precpu_stats"] == through_sdk["precpu_stats"]  # one-shot: no previous sample
        readings.append(parse_stats(ContainerStats.model_validate(payload)))
    assert readings[0] is not None
    assert readings[1] is not None
    assert readings[1].timestamp_ns > readings[0].timestamp_ns


@pytest.mark.integration
def test_stats_of_a_removed_container_raise_not_found(
    docker_api: Any, start_container: StartContainer
) -> None:
    container_id = start_container("removed", SLEEP)
    client = EngineClient(new_api_client(), pool_size=4)
    try:
        client.stats(container_id, stream=False, one_shot=True)  # its request is prepared and kept
        docker_api.remove_container(container_id, force=True)
        with pytest.raises(NotFound) as raised:
            client.stats(container_id, stream=False, one_shot=True)
    finally:
        client.close()
    assert raised.value.status_code == 404  # what DockerSource counts as "gone"


@pytest.mark.integration
def test_worker_threads_reuse_their_connections(start_container: StartContainer) -> None:
    fleet = [start_container(f"conn{i}", SLEEP) for i in range(30)]
    workers, rounds = 6, 3

    def connects(client: Any) -> int:
        with ThreadPoolExecutor(workers) as pool:

            def work() -> None:
                for _ in range(rounds):
                    list(pool.map(client.inspect_container, fleet))

            client.inspect_container(fleet[0])  # version negotiation and the like, before counting
            try:
                return UnixConnects.during(work)
            finally:
                client.close()

    tuned = connects(EngineClient(new_api_client(), pool_size=workers))
    # docker-py alone keeps one pool per URL, 25 by default: with 30 containers most calls connect anew.
    sdk_alone = connects(new_api_client())
    assert tuned <= workers
    assert sdk_alone > len(fleet) * rounds / 2


@pytest.mark.parametrize(
    ("base_url", "proxies_looked_up"),
    [("unix:///var/run/docker.sock", False), ("tcp://127.0.0.1:2375", True)],
)
def test_proxy_lookups_are_off_only_for_a_unix_socket(base_url: str, proxies_looked_up: bool) -> None:
    api = docker.APIClient(base_url=base_url, version="1.41", timeout=5)  # connects to nothing yet
    try:
        EngineClient(api, pool_size=4)
        # Proxies may be legitimate for a remote engine; they never apply to a socket file.
        assert api.trust_env is proxies_looked_up
    finally:
        api.close()

"""Fixtures for the source tests that talk to the real Docker engine (all marked ``integration``).

The engine's readiness and the busybox image come from the suite's session fixtures (``docker_client``,
``busybox_image`` in tests/conftest.py); this adds low-level clients and containers started through the
low-level API, which is what ``DockerSource`` itself speaks.
"""

from __future__ import annotations

import contextlib
import gc
import uuid
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest
from docker.errors import NotFound

from tests.helpers import OWNER_LABEL, TEST_LABEL, owner_token

CONTAINER_PREFIX = "kph1-"
"""Every container these tests start is named with this prefix, so it is easy to tell apart."""


@contextlib.contextmanager
def sdk_socket_leak_tolerated() -> Iterator[None]:
    """docker-py's UnixHTTPConnection.connect drops its socket unclosed when connect() fails.

    The socket is only freed by the garbage collector, with a ResourceWarning that this suite turns into an
    error. The leak is the SDK's, not the source's: collect it here, inside the block, and ignore just that.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="unclosed <socket", category=ResourceWarning)
        yield
        gc.collect()


def new_api_client(timeout: float = 30.0) -> Any:
    """A low-level client for the engine ``DOCKER_HOST`` (or the local socket) names; the caller closes it."""
    return docker.APIClient(version="auto", timeout=timeout, **docker.utils.kwargs_from_env())


@pytest.fixture(scope="session")
def docker_api(docker_client: docker.DockerClient) -> Any:
    """The low-level client inside the suite's session client (set-up and inspection only)."""
    return docker_client.api


StartContainer = Callable[..., str]


@pytest.fixture
def start_container(docker_api: Any, busybox_image: str) -> Iterator[StartContainer]:
    """Start a busybox container and return its id; every container started is removed at teardown.

    ``start_container("burner", ["sh", "-c", "while :; do :; done"], labels={...}, network_mode=...,
    nano_cpus=..., mem_limit=...)``: extra keyword arguments go to ``create_host_config``.
    """
    started: list[str] = []
    owner = owner_token()

    def start(role: str, command: list[str], *, labels: dict[str, str] | None = None, **host: Any) -> str:
        created = docker_api.create_container(
            busybox_image,
            command=command,
            name=f"{CONTAINER_PREFIX}{role}-{uuid.uuid4().hex[:8]}",
            # The suite's labels let its session fixture clean up after a test process that died.
            labels={**(labels or {}), TEST_LABEL: "1", OWNER_LABEL: owner},
            host_config=docker_api.create_host_config(**host),
        )
        container_id: str = created["Id"]
        started.append(container_id)
        docker_api.start(container_id)
        return container_id

    yield start
    # Newest first: a container that joined another's network namespace goes before that one.
    for container_id in reversed(started):
        with contextlib.suppress(NotFound):  # the test may have removed it itself
            docker_api.remove_container(container_id, force=True)

"""Session fixtures for integration tests: the real Docker engine, InfluxDB, a busybox image, test containers.

``./scripts/test`` starts dockerd and influxd before pytest runs; these fixtures only wait (with a deadline)
for them to answer and fail with a clear message when they do not, so a missing daemon is never mistaken
for a pass. ``KPULSE_SKIP_INTEGRATION=1`` skips the tests that need them instead (quick unit runs).
Tests that use these fixtures are marked ``integration``.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import socket
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import docker
import docker.errors
import pytest
import requests

from tests.helpers import (
    InfluxDatabases,
    InfluxV1,
    LabelledContainers,
    remove_leftover_containers,
    wait_until,
)

SKIP_INTEGRATION_ENV = "KPULSE_SKIP_INTEGRATION"
DAEMON_DEADLINE_SECONDS = 30.0
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
PROBE_API_VERSION = "1.41"
"""Docker Engine 20.10's API; pinned so that the readiness probe sends nothing before ``ping()``."""

BUSYBOX_IMAGE = "kpulse-test/busybox:latest"
BUSYBOX_HASH_LABEL = "kpulse.test.busybox-sha256"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
"""Where Debian's busybox-static puts its (statically linked) binary."""


def integration_disabled() -> bool:
    return os.environ.get(SKIP_INTEGRATION_ENV) == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not integration_disabled():
        return
    skip = pytest.mark.skip(reason=f"{SKIP_INTEGRATION_ENV}=1")
    for item in items:
        if item.get_closest_marker("integration") is not None:
            item.add_marker(skip)


def _connect_once(engine: str) -> None:
    """Connect to the engine's socket and hang up; raises ``OSError`` when nothing listens.

    Done with a plain socket because docker-py leaks the socket of a connection attempt that fails.
    """
    url = urlsplit(engine)
    if url.scheme in ("unix", "http+unix"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(url.path)
    else:
        with socket.create_connection((url.hostname or "127.0.0.1", url.port or 2375), timeout=2):
            pass


def _require_integration() -> None:
    if integration_disabled():
        pytest.skip(f"{SKIP_INTEGRATION_ENV}=1")


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """A Docker SDK client for the local engine (``DOCKER_HOST`` or the socket), known to answer."""
    _require_integration()
    engine = os.environ.get("DOCKER_HOST", DEFAULT_DOCKER_HOST)
    errors: list[str] = []

    def answers() -> bool:
        try:
            _connect_once(engine)
            # The socket accepts: ask the API too (dockerd listens a moment before it serves).
            probe = docker.from_env(version=PROBE_API_VERSION, timeout=5)
            try:
                return bool(probe.ping())
            finally:
                probe.close()
        except (OSError, docker.errors.DockerException, requests.RequestException) as exc:
            errors.append(repr(exc))
            return False

    wait_until(
        answers,
        DAEMON_DEADLINE_SECONDS,
        lambda: (
            f"Docker engine at {engine} does not answer (last error: {errors[-1] if errors else 'none'})."
            f" ./scripts/test starts dockerd; set {SKIP_INTEGRATION_ENV}=1 to skip integration tests instead"
        ),
        every_seconds=0.5,
    )
    client = docker.from_env(timeout=60)
    remove_leftover_containers(client)
    yield client
    client.close()


@pytest.fixture(scope="session")
def influx_url() -> str:
    """Base URL of the InfluxDB 1.x server the tests write to, known to answer /ping."""
    _require_integration()
    url = os.environ.get("KPULSE_TEST_INFLUX_URL", "http://127.0.0.1:8086").rstrip("/")
    influx = InfluxV1(url)
    wait_until(
        influx.ping,
        DAEMON_DEADLINE_SECONDS,
        f"InfluxDB does not answer at {url}/ping. ./scripts/test starts influxd; set"
        f" {SKIP_INTEGRATION_ENV}=1 to skip integration tests instead",
        every_seconds=0.5,
    )
    return url


def fresh_database(influx_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database named after the requesting test module, dropped when the fixture ends."""
    databases = InfluxDatabases(influx_url)
    prefix = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")[:20]
    yield databases.create(prefix)
    databases.drop_all()


@pytest.fixture(scope="module")
def influx_database(influx_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty database for the test module, dropped after it."""
    yield from fresh_database(influx_url, request)


def _find_busybox() -> Path:
    for candidate in BUSYBOX_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    found = shutil.which("busybox")
    if found is None:
        pytest.fail("busybox not found: install Debian's busybox-static (./scripts/test does)")
    return Path(found)


def _busybox_rootfs_tar(busybox: Path) -> bytes:
    """A root filesystem with only ``/bin/busybox`` and one symlink to it per applet, as a tar archive."""
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory, mode in (("bin", 0o755), ("tmp", 0o1777), ("data", 0o755)):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox", recursive=False)
        for applet in sorted(set(applets) - {"busybox"}):
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def busybox_image(docker_client: docker.DockerClient) -> str:
    """``kpulse-test/busybox:latest``, built from the host's static busybox unless already built from it."""
    busybox = _find_busybox()
    digest = hashlib.sha256(busybox.read_bytes()).hexdigest()
    try:
        existing = docker_client.images.get(BUSYBOX_IMAGE)
    except docker.errors.ImageNotFound:
        existing = None
    if existing is not None and existing.labels.get(BUSYBOX_HASH_LABEL) == digest:
        return BUSYBOX_IMAGE
    repository, tag = BUSYBOX_IMAGE.rsplit(":", 1)
    docker_client.api.import_image_from_data(
        _busybox_rootfs_tar(busybox),
        repository=repository,
        tag=tag,
        changes=[
            f"LABEL {BUSYBOX_HASH_LABEL}={digest}",
            "ENV PATH=/bin",
            'CMD ["sh"]',
        ],
    )
    output = docker_client.containers.run(BUSYBOX_IMAGE, ["sh", "-c", "echo ok"], remove=True)
    assert output.strip() == b"ok", f"{busybox} does not run in an empty image: is it busybox-static?"
    return BUSYBOX_IMAGE


@pytest.fixture
def containers(docker_client: docker.DockerClient, busybox_image: str) -> Iterator[LabelledContainers]:
    """Starts labelled busybox containers for one test and removes them after it."""
    started = LabelledContainers(docker_client, busybox_image)
    yield started
    started.remove_all()

"""Session fixtures of the deployment tests: the images, built once per session (integration only)."""

from __future__ import annotations

import docker
import pytest

from tests.deploy.images import Built, build_influxdb_image, build_kpulse_image, ensure_base_image


@pytest.fixture(scope="session")
def base_image(docker_client: docker.DockerClient) -> Built:
    """The locally made Debian base (mmdebstrap → docker import), made only when missing."""
    return ensure_base_image()


@pytest.fixture(scope="session")
def kpulse_image(base_image: Built) -> Built:
    """The kpulse image built from the project's Dockerfile on the local base."""
    return build_kpulse_image(base_image.tag)


@pytest.fixture(scope="session")
def influxdb_image(base_image: Built) -> Built:
    """InfluxDB 1.x from Debian's package, on the local base."""
    return build_influxdb_image(base_image.tag)

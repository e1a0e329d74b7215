"""The kpulse image: one image for the three services, non-root, small, and free of the build's CA bundle."""

from __future__ import annotations

import docker
import pytest

from tests.deploy.images import CA_IN_CONTEXT, Built

MAX_IMAGE_BYTES = 250 * 1024 * 1024
"""The local Debian base is about 125 MB; kpulse's virtualenv adds about 40 MB."""


def run(client: docker.DockerClient, image: str, *command: str) -> str:
    output: bytes = client.containers.run(
        image, list(command), remove=True, read_only=True, network_disabled=True
    )
    return output.decode()


@pytest.mark.integration
def test_image_runs_every_service_entry_point_as_a_non_root_user(
    docker_client: docker.DockerClient, kpulse_image: Built
) -> None:
    config = docker_client.images.get(kpulse_image.tag).attrs["Config"]
    assert config["User"] == "10001:10001"
    assert config["Cmd"] == ["python", "-m", "aggregator"]
    assert run(docker_client, kpulse_image.tag, "id", "-u").strip() == "10001"
    for module in ("collector", "dashboards"):
        assert "usage: python -m" in run(docker_client, kpulse_image.tag, "python", "-m", module, "--help")
    # The aggregator has no --help (it would start serving): its entry point must import.
    entry_points = "import aggregator.__main__, collector.__main__, dashboards.__main__; print('ok')"
    assert run(docker_client, kpulse_image.tag, "python", "-c", entry_points).strip() == "ok"


@pytest.mark.integration
def test_image_is_small_and_keeps_neither_pip_nor_the_build_ca(
    docker_client: docker.DockerClient, kpulse_image: Built
) -> None:
    assert kpulse_image.size_bytes < MAX_IMAGE_BYTES, f"{kpulse_image.size_bytes / 2**20:.0f} MiB"
    probe = (
        "import importlib.util, os, sys; "
        f"paths = ('/tmp/pip-ca.pem', '/tmp/build-ca', '/{CA_IN_CONTEXT}'); "
        "leftovers = [p for p in paths if os.path.exists(p)]; "
        "pip = importlib.util.find_spec('pip'); "
        "print(leftovers, pip is None, sys.prefix)"
    )
    assert run(docker_client, kpulse_image.tag, "python", "-c", probe).split() == [
        "[]",
        "True",
        "/opt/kpulse",
    ]

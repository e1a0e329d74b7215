"""``python -m collector --once`` against the real engine: one point-shaped JSON object per line."""

from __future__ import annotations

import os
import subprocess
import sys

import docker
import orjson
import pytest

pytestmark = pytest.mark.integration


def test_once_prints_points_for_the_node_and_every_running_container(
    busybox_image: str, docker_client: docker.DockerClient
) -> None:
    container = docker_client.containers.run(
        busybox_image,
        ["sleep", "600"],
        name=f"kpt-once-{os.getpid()}",
        labels={"kpulse.test": "1"},
        detach=True,
    )
    try:
        env = {**os.environ, "KPULSE_COLLECTOR_NODE_NAME": "once-node", "KPULSE_COLLECTOR_SOURCE": "docker"}
        result = subprocess.run(
            [sys.executable, "-m", "collector", "--once"],
            env=env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr.decode()
        points = [orjson.loads(line) for line in result.stdout.splitlines()]
    finally:
        container.remove(force=True)
    for point in points:
        assert set(point) == {"measurement", "tags", "fields", "time"}
        assert point["tags"]["node"] == "once-node"
        assert isinstance(point["time"], int)
        assert all(isinstance(value, int) and value >= 0 for value in point["fields"].values())
    (node,) = [point for point in points if point["measurement"] == "node"]
    assert node["fields"]["cpu_capacity_millicores"] == 1000 * os.cpu_count()  # type: ignore[operator]
    mine = [point for point in points if point["tags"].get("container") == container.name]
    assert len(mine) == 1
    assert mine[0]["measurement"] == "container"
    assert mine[0]["tags"]["namespace"] == "default"
    assert mine[0]["fields"]["cpu_usage_nanoseconds_total"] > 0
    assert mine[0]["fields"]["memory_usage_bytes"] > 0

"""docker-compose.yml: its configuration, and a smoke test of the whole stack on the real engine.

The smoke test builds the kpulse image from the locally made Debian base, swaps only what cannot be pulled
here (deploy/compose/test.yml: InfluxDB from Debian's package, Grafana not started), brings the stack up
with ``compose up -d collector`` and polls the stack's own InfluxDB, through a published port, until the
host's real containers (the stack's own and one plain container started beside it) and the host as a node
show up; then it tears everything down.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
import requests

from tests.deploy.images import Built
from tests.deploy.tooling import COMPOSE_FILE, COMPOSE_TEST_OVERRIDE, REPO, Compose, settings_env_names
from tests.helpers import (
    OWNER_LABEL,
    TEST_LABEL,
    InfluxError,
    InfluxV1,
    owner_token,
    quote_string,
    wait_until,
)

PROJECT = os.environ.get("KPULSE_TEST_COMPOSE_PROJECT", "kpulse-smoke")
NODE_NAME = "kpulse-smoke-node"
CLUSTER_NAME = "kpulse-smoke"
INTERVAL_SECONDS = 2
DATA_DEADLINE_SECONDS = 150.0
KPULSE_SERVICES = {"collector", "aggregator"}


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    """An empty env file: a developer's .env must not change what the tests see."""
    path = tmp_path / "empty.env"
    path.write_text("")
    return path


def configured(env_file: Path, **variables: str) -> dict[str, Any]:
    required = {"KPULSE_INGEST_TOKEN": "not-a-secret", "GRAFANA_ADMIN_PASSWORD": "not-a-secret"}
    return Compose(project="kpulse-config", env_file=env_file, variables={**required, **variables}).config()


def test_every_kpulse_variable_is_a_setting(env_file: Path) -> None:
    known = settings_env_names()
    config = configured(env_file)
    for service in KPULSE_SERVICES:
        for name in config["services"][service]["environment"]:
            assert name in known, f"{service}: {name} is not a settings field"


def test_collector_reads_the_engine_and_the_hosts_proc_read_only(env_file: Path) -> None:
    collector = configured(env_file)["services"]["collector"]
    volumes = {
        str(v) if isinstance(v, str) else f"{v['source']}:{v['target']}:ro" for v in collector["volumes"]
    }
    assert "/var/run/docker.sock:/var/run/docker.sock:ro" in volumes
    assert "/proc:/host/proc:ro" in volumes
    env = collector["environment"]
    assert env["KPULSE_COLLECTOR_PROC_PATH"] == "/host/proc"
    assert env["KPULSE_COLLECTOR_SOURCE"] == "docker"
    assert env["KPULSE_COLLECTOR_AGGREGATOR_URL"] == "http://aggregator:8080"


def test_services_restart_and_wait_for_healthy_dependencies(env_file: Path) -> None:
    services = configured(env_file)["services"]
    assert {name: s["restart"] for name, s in services.items()} == dict.fromkeys(services, "unless-stopped")
    assert services["collector"]["depends_on"] == {"aggregator": {"condition": "service_healthy"}}
    assert services["aggregator"]["depends_on"] == {"influxdb": {"condition": "service_healthy"}}
    assert services["grafana"]["depends_on"] == {"influxdb": {"condition": "service_healthy"}}
    for name in ("aggregator", "influxdb", "grafana"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    # Our image has no curl: the aggregator's healthcheck is Python's urllib.
    assert services["aggregator"]["healthcheck"]["test"][1] == "python"
    for name in ("collector", "aggregator", "grafana"):
        assert services[name]["read_only"] is True, name
        assert services[name]["cap_drop"] == ["ALL"], name


def test_interval_and_aggregator_resolution_follow_one_variable(env_file: Path) -> None:
    services = configured(env_file, KPULSE_COLLECTOR_INTERVAL_SECONDS="7")["services"]
    assert services["collector"]["environment"]["KPULSE_COLLECTOR_INTERVAL_SECONDS"] == "7"
    assert services["aggregator"]["environment"]["KPULSE_AGGREGATOR_RESOLUTION_SECONDS"] == "7"


@pytest.mark.parametrize("missing", ["KPULSE_INGEST_TOKEN", "GRAFANA_ADMIN_PASSWORD"])
def test_a_missing_secret_stops_compose_with_a_pointer_to_env_example(env_file: Path, missing: str) -> None:
    variables = {"KPULSE_INGEST_TOKEN": "x", "GRAFANA_ADMIN_PASSWORD": "y"}
    del variables[missing]
    completed = Compose(project="kpulse-config", env_file=env_file, variables=variables).run(
        "config", check=False
    )
    assert completed.returncode != 0
    assert f"set {missing} in .env" in completed.stdout + completed.stderr


def test_env_example_names_every_variable_the_compose_file_reads() -> None:
    compose_text = COMPOSE_FILE.read_text()
    example = (REPO / ".env.example").read_text()
    read = set(re.findall(r"\$\{([A-Z0-9_]+)", compose_text))
    listed = set(re.findall(r"^#?([A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert read == listed


@pytest.fixture
def stack(
    docker_client: docker.DockerClient, kpulse_image: Built, influxdb_image: Built, tmp_path: Path
) -> Iterator[Compose]:
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    compose = Compose(
        project=PROJECT,
        env_file=env_file,
        files=(COMPOSE_FILE, COMPOSE_TEST_OVERRIDE),
        variables={
            "KPULSE_IMAGE": kpulse_image.tag,
            "KPULSE_INFLUXDB_IMAGE": influxdb_image.tag,
            "KPULSE_INGEST_TOKEN": secrets.token_urlsafe(32),
            "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(16),
            "KPULSE_COLLECTOR_INTERVAL_SECONDS": str(INTERVAL_SECONDS),
            "KPULSE_COLLECTOR_NODE_NAME": NODE_NAME,
            "KPULSE_AGGREGATOR_CLUSTER_NAME": CLUSTER_NAME,
            # An empty port publishes on any free one: a local aggregator may hold 8080.
            "KPULSE_AGGREGATOR_PUBLISHED_PORT": "",
        },
    )
    compose.run("down", "--volumes", "--remove-orphans")  # what a killed earlier run left
    try:
        yield compose
    finally:
        compose.run("down", "--volumes", "--remove-orphans", "--timeout", "5", check=False)


@pytest.fixture
def plain_container(docker_client: docker.DockerClient, base_image: Built) -> Iterator[str]:
    """A container outside any compose project, like most of a host's containers; its name."""
    name = f"{PROJECT}-plain"
    with contextlib.suppress(docker.errors.NotFound):
        docker_client.containers.get(name).remove(force=True)
    started = docker_client.containers.run(
        base_image.tag,
        ["sleep", "900"],
        name=name,
        detach=True,
        labels={TEST_LABEL: "1", OWNER_LABEL: owner_token()},
    )
    try:
        yield name
    finally:
        started.remove(force=True)


def latest_by(influx: InfluxV1, measurement: str, field: str, where: str, tag: str) -> dict[str, float]:
    """The latest ``field`` of each ``tag`` value among ``measurement``'s points matching ``where``."""
    rows = influx.rows(
        f'SELECT last("{field}") AS "value" FROM "{measurement}" WHERE {where} AND time > now() - 10m '
        f'GROUP BY "{tag}"'
    )
    return {row[tag]: row["value"] for row in rows if row.get("value") is not None}


def container_names(docker_client: docker.DockerClient, project: str) -> set[str]:
    found = docker_client.containers.list(filters={"label": f"com.docker.compose.project={project}"})
    return {c.name for c in found}


def host_memory_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


@pytest.mark.integration
def test_stack_brings_the_hosts_containers_into_influxdb(
    stack: Compose, plain_container: str, docker_client: docker.DockerClient
) -> None:
    # `up` of the collector starts what it depends on (aggregator, then influxdb), waiting for each to be
    # healthy; Grafana is not among them, so nothing needs pulling.
    up = stack.run("up", "--detach", "--no-build", "collector", check=False)
    assert up.returncode == 0, f"compose up failed:\n{up.stderr[-3000:]}\n{stack.logs()}"
    stack_containers = container_names(docker_client, PROJECT)
    assert len(stack_containers) == 3, stack_containers
    influx = InfluxV1(f"http://127.0.0.1:{stack.published_port('influxdb', 8086)}", "kpulse")
    project_namespace = f'"namespace" = {quote_string(PROJECT)}'
    seen: dict[str, Any] = {}

    def everything_arrived() -> bool:
        if not influx.ping():
            return False
        try:
            seen["memory"] = latest_by(
                influx, "container", "memory_usage_bytes", project_namespace, "container"
            )
            seen["cpu"] = latest_by(
                influx, "container", "cpu_usage_millicores", project_namespace, "container"
            )
            seen["plain"] = latest_by(
                influx,
                "container",
                "memory_usage_bytes",
                f'"pod" = {quote_string(plain_container)}',
                "namespace",
            )
            seen["node"] = influx.rows(
                'SELECT last("cpu_capacity_millicores") AS "cpu", last("memory_capacity_bytes") AS "memory", '
                f'last("cpu_usage_millicores") AS "used" FROM "node" WHERE "node" = {quote_string(NODE_NAME)}'
            )
        except (InfluxError, requests.RequestException) as exc:  # no database before the first write
            seen["error"] = repr(exc)
            return False
        return (
            set(seen["memory"]) >= stack_containers
            and set(seen["cpu"]) >= stack_containers
            and bool(seen["plain"])
            and bool(seen["node"])
            and seen["node"][0].get("used") is not None
        )

    wait_until(
        everything_arrived,
        DATA_DEADLINE_SECONDS,
        lambda: f"the stack's InfluxDB did not get every container; last seen {seen}\n{stack.logs()}",
        every_seconds=1.0,
    )
    # Real values, not placeholders: memory in use, no negative rate, the host's own capacity.
    assert all(value > 0 for value in seen["memory"].values()), seen["memory"]
    assert all(value >= 0 for value in seen["cpu"].values()), seen["cpu"]
    assert set(seen["plain"]) == {"default"}, "a container outside compose goes to the default namespace"
    (node,) = seen["node"]
    assert node["cpu"] == (os.cpu_count() or 0) * 1000
    assert abs(node["memory"] - host_memory_bytes()) <= 0.01 * host_memory_bytes()
    assert node["used"] >= 0
    # The cluster tag is the aggregator's setting, carried through to every level.
    clusters = influx.rows(
        f'SHOW TAG VALUES FROM "node" WITH KEY = "cluster" WHERE "node" = {quote_string(NODE_NAME)}'
    )
    assert {row["value"] for row in clusters} == {CLUSTER_NAME}

    # Every kpulse service reports healthy through its own healthcheck (the collector's heartbeat too).
    def health() -> dict[str, str]:
        found = docker_client.containers.list(filters={"label": f"com.docker.compose.project={PROJECT}"})
        return {c.labels["com.docker.compose.service"]: c.attrs["State"]["Health"]["Status"] for c in found}

    wait_until(
        lambda: all(status == "healthy" for status in health().values()),
        DATA_DEADLINE_SECONDS,
        lambda: f"not every service became healthy: {health()}\n{stack.logs()}",
        every_seconds=1.0,
    )

"""End to end on a Docker host: known load -> collector -> aggregator -> InfluxDB, read back with InfluxQL.

Every expectation comes from the load the scenario puts on the containers (see ``conftest.py``), never from
what the pipeline happened to write. Values are polled with a deadline until enough points exist.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from aggregator import catalog
from aggregator.catalog import Level
from tests.e2e.conftest import DB_MEMORY_LIMIT_BYTES, MEMORY_HELD_BYTES, DockerHostScenario, Identity
from tests.helpers import quote_ident, quote_string, wait_until

pytestmark = pytest.mark.integration

SETTLE_SECONDS = 120.0
RECENT_POINTS = 5
"""Steady-state values are judged on the mean of this many latest points (10 s at the 2 s interval)."""
CAPACITY_SLACK = 1.05
"""Sampling jitter may push one interval's rate slightly past the hardware; 5% more is a bug."""

Row = dict[str, Any]

NETWORK_FIELDS = frozenset(metric.name for metric in catalog.METRICS if metric.name.startswith("network_"))
CPU_USAGE_FIELDS = frozenset(
    {catalog.CPU_USAGE_MILLICORES.name, catalog.CPU_USER_MILLICORES.name, catalog.CPU_SYSTEM_MILLICORES.name}
)
MEMORY_USAGE_FIELDS = frozenset(
    {
        catalog.MEMORY_USAGE_BYTES.name,
        catalog.MEMORY_WORKING_SET_BYTES.name,
        catalog.MEMORY_RSS_BYTES.name,
        catalog.MEMORY_CACHE_BYTES.name,
    }
)

# What the Docker source can produce on a Docker host: the Engine API's stats (CPU, throttling, memory,
# network, block I/O, pids) and the node's /proc. Not expected here: Kubernetes requests and allocatable
# (kubelet only), filesystem usage, restart counts and CPU limits (not in the stats payload).
DOCKER_CONTAINER_FIELDS = frozenset(
    metric.name
    for metric in (
        catalog.CPU_USAGE_MILLICORES,
        catalog.CPU_USER_MILLICORES,
        catalog.CPU_SYSTEM_MILLICORES,
        catalog.CPU_USAGE_SECONDS_TOTAL,
        catalog.CPU_THROTTLED_RATIO,
        catalog.MEMORY_USAGE_BYTES,
        catalog.MEMORY_WORKING_SET_BYTES,
        catalog.MEMORY_RSS_BYTES,
        catalog.MEMORY_CACHE_BYTES,
        catalog.MEMORY_LIMIT_BYTES,
        catalog.NETWORK_RX_BYTES_PER_SECOND,
        catalog.NETWORK_TX_BYTES_PER_SECOND,
        catalog.NETWORK_RX_PACKETS_PER_SECOND,
        catalog.NETWORK_TX_PACKETS_PER_SECOND,
        catalog.NETWORK_RX_ERRORS_PER_SECOND,
        catalog.NETWORK_TX_ERRORS_PER_SECOND,
        catalog.NETWORK_RX_DROPPED_PER_SECOND,
        catalog.NETWORK_TX_DROPPED_PER_SECOND,
        catalog.DISK_READ_BYTES_PER_SECOND,
        catalog.DISK_WRITE_BYTES_PER_SECOND,
        catalog.PROCESS_COUNT,
    )
)
DOCKER_NODE_FIELDS = frozenset(
    metric.name
    for metric in (
        catalog.CPU_USAGE_MILLICORES,
        catalog.CPU_CAPACITY_MILLICORES,
        catalog.MEMORY_USAGE_BYTES,
        catalog.MEMORY_WORKING_SET_BYTES,
        catalog.MEMORY_CAPACITY_BYTES,
        catalog.NETWORK_RX_BYTES_PER_SECOND,
        catalog.NETWORK_TX_BYTES_PER_SECOND,
        catalog.CONTAINER_COUNT,
        catalog.POD_COUNT,
    )
)


def _rolled_up_from_containers(level: Level) -> frozenset[str]:
    return frozenset(m.name for m in catalog.fields_for(level) if m.name in DOCKER_CONTAINER_FIELDS)


EXPECTED_ON_DOCKER_HOST: dict[Level, frozenset[str]] = {
    Level.CONTAINER: DOCKER_CONTAINER_FIELDS,
    Level.POD: _rolled_up_from_containers(Level.POD) | {catalog.CONTAINER_COUNT.name},
    Level.NAMESPACE: _rolled_up_from_containers(Level.NAMESPACE)
    | {catalog.CONTAINER_COUNT.name, catalog.POD_COUNT.name},
    Level.NODE: DOCKER_NODE_FIELDS,
    Level.CLUSTER: DOCKER_NODE_FIELDS | {catalog.NODE_COUNT.name},
}


def _common_fields(parent: Level, child: Level) -> frozenset[str]:
    child_fields = {m.name for m in catalog.fields_for(child)}
    return frozenset(m.name for m in catalog.fields_for(parent) if m.name in child_fields)


# ---------------------------------------------------------------------------------------------- queries


def _where(identity: Identity) -> str:
    return " AND ".join(
        f"{quote_ident(tag)} = {quote_string(value)}"
        for tag, value in (
            ("namespace", identity.namespace),
            ("pod", identity.pod),
            ("container", identity.container),
        )
    )


def _container_points(
    e2e: DockerHostScenario, role: str, field: str, *, after_ns: int = -1
) -> list[tuple[int, float]]:
    """``(time, value)`` of every point of the container of ``role`` that has ``field``, oldest first."""
    rows = e2e.influx.rows(
        f"SELECT {quote_ident(field)} FROM container WHERE {_where(e2e.identity(role))} AND time > {after_ns}"
    )
    return [(row["time"], row[field]) for row in rows if row[field] is not None]


def _container_values(e2e: DockerHostScenario, role: str, field: str, *, after_ns: int = -1) -> list[float]:
    """Every value of ``field`` for the container of ``role``, oldest first."""
    return [value for _, value in _container_points(e2e, role, field, after_ns=after_ns)]


def _settled_mean(
    e2e: DockerHostScenario,
    role: str,
    field: str,
    accept: Callable[[float], bool],
    expectation: str,
    *,
    points: int = RECENT_POINTS,
    after_ns: int = -1,
) -> float:
    """Poll until the mean of the latest ``points`` values is accepted; fail showing them at the deadline."""
    latest: list[float] = []

    def settled() -> bool:
        e2e.assert_services_running()
        latest[:] = _container_values(e2e, role, field, after_ns=after_ns)[-points:]
        return len(latest) == points and accept(statistics.fmean(latest))

    wait_until(
        settled,
        SETTLE_SECONDS,
        lambda: (
            f"{role} ({e2e.containers[role].name}) {field}: expected {expectation}; latest values {latest}."
            f" {_node_cpu_note(e2e)}"
        ),
        every_seconds=1.0,
    )
    return statistics.fmean(latest)


def _node_cpu_note(e2e: DockerHostScenario) -> str:
    """How busy the whole machine was: a burner cannot get its core while others keep both busy."""
    rows = e2e.influx.rows(
        'SELECT "cpu_usage_millicores", "cpu_capacity_millicores" FROM node ORDER BY time DESC LIMIT 5'
    )
    usage = [round(row["cpu_usage_millicores"] or 0) for row in rows]
    capacity = rows[0]["cpu_capacity_millicores"] if rows else None
    return f"Whole node meanwhile (newest first): {usage} of {capacity} millicores."


def _all_rows(e2e: DockerHostScenario, measurement: str) -> list[Row]:
    return e2e.influx.rows(f"SELECT * FROM {quote_ident(measurement)}")


def _numeric(row: Row) -> Iterable[tuple[str, float]]:
    for key, value in row.items():
        if key != "time" and isinstance(value, int | float) and not isinstance(value, bool):
            yield key, float(value)


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)


def _sum_problems(
    parents: list[Row],
    children: list[Row],
    key: Callable[[Row], tuple[str, ...]],
    summed: frozenset[str],
    count_field: str,
    *,
    own_network: bool = False,
) -> tuple[list[str], dict[tuple[str, ...], int]]:
    """Compare each parent point with the sum of its children's points at the same timestamp.

    A field no child has must be absent from the parent (unless ``own_network``: a pod's network is its
    sandbox's, not its containers'). A parent missing a field is accepted only while some child lacks it
    too (a container's first sample has no rate yet). Returns the problems and, per parent key, how many
    timestamps were compared.
    """
    by_parent: dict[tuple[tuple[str, ...], int], list[Row]] = defaultdict(list)
    for child in children:
        by_parent[(key(child), child["time"])].append(child)
    problems: list[str] = []
    compared: dict[tuple[str, ...], int] = defaultdict(int)
    for parent in parents:
        group = by_parent.get((key(parent), parent["time"]))
        if not group:
            continue
        compared[key(parent)] += 1
        where = f"{key(parent)} at {parent['time']}"
        if parent.get(count_field) != len(group):
            problems.append(f"{where}: {count_field}={parent.get(count_field)} but {len(group)} children")
        for field in sorted(summed):
            values = [child[field] for child in group if child.get(field) is not None]
            value = parent.get(field)
            if not values:
                if value is not None and not (own_network and field in NETWORK_FIELDS):
                    problems.append(f"{where}: {field}={value} but no child has it")
            elif value is None:
                if len(values) == len(group):
                    problems.append(f"{where}: {field} missing, children sum to {sum(values)}")
            elif not _close(value, sum(values)):
                problems.append(f"{where}: {field}={value} but children sum to {sum(values)} ({values})")
    return problems, compared


def _check_nothing_negative_or_beyond_capacity(e2e: DockerHostScenario) -> None:
    node_rows = _all_rows(e2e, "node")
    cluster_rows = _all_rows(e2e, "cluster")
    node_cpu = max((row.get("cpu_capacity_millicores") or 0 for row in node_rows), default=0)
    node_memory = max((row.get("memory_capacity_bytes") or 0 for row in node_rows), default=0)
    cluster_cpu = max((row.get("cpu_capacity_millicores") or 0 for row in cluster_rows), default=0)
    cluster_memory = max((row.get("memory_capacity_bytes") or 0 for row in cluster_rows), default=0)
    assert node_cpu > 0, "node has no cpu_capacity_millicores"
    assert node_memory > 0, "node has no memory_capacity_bytes"
    capacity = {
        Level.CONTAINER: (node_cpu, node_memory),
        Level.POD: (node_cpu, node_memory),
        Level.NODE: (node_cpu, node_memory),
        Level.NAMESPACE: (cluster_cpu, cluster_memory),
        Level.CLUSTER: (cluster_cpu, cluster_memory),
    }
    problems: list[str] = []
    checked = 0
    for level in Level:
        cpu_cap, memory_cap = capacity[level]
        rows = node_rows if level is Level.NODE else _all_rows(e2e, level.value)
        for row in rows:
            for field, value in _numeric(row):
                checked += 1
                where = (
                    f"{level.value} {row.get('namespace')}/{row.get('pod')}/{row.get('container')} {field}"
                )
                if value < 0:
                    problems.append(f"{where} = {value} at {row['time']}: negative")
                elif field in CPU_USAGE_FIELDS and value > cpu_cap * CAPACITY_SLACK:
                    problems.append(f"{where} = {value} at {row['time']}: above capacity {cpu_cap}")
                elif field in MEMORY_USAGE_FIELDS and value > memory_cap * CAPACITY_SLACK:
                    problems.append(f"{where} = {value} at {row['time']}: above capacity {memory_cap}")
                elif field == catalog.CPU_THROTTLED_RATIO.name and value > 1:
                    problems.append(f"{where} = {value} at {row['time']}: a ratio above 1")
    assert checked > 0, "no numeric value in the database at all"
    assert not problems, f"{len(problems)} impossible values, e.g.:\n" + "\n".join(problems[:30])


# ------------------------------------------------------------------------------------------------ CPU


def test_full_burner_uses_one_core(docker_host_e2e: DockerHostScenario) -> None:
    mean = _settled_mean(
        docker_host_e2e, "burner_full", "cpu_usage_millicores", lambda m: 950 <= m <= 1050, "1000 ± 50"
    )
    assert 950 <= mean <= 1050


def test_limited_burner_uses_half_a_core(docker_host_e2e: DockerHostScenario) -> None:
    mean = _settled_mean(
        docker_host_e2e, "burner_limited", "cpu_usage_millicores", lambda m: 475 <= m <= 525, "500 ± 25"
    )
    assert 475 <= mean <= 525
    ratio = _settled_mean(
        docker_host_e2e, "burner_limited", "cpu_throttled_ratio", lambda r: r > 0.5, "throttled most periods"
    )
    assert ratio <= 1


def test_idle_container_uses_almost_nothing(docker_host_e2e: DockerHostScenario) -> None:
    mean = _settled_mean(docker_host_e2e, "idle", "cpu_usage_millicores", lambda m: 0 <= m < 20, "under 20")
    assert mean < 20


# --------------------------------------------------------------------------------------------- memory


@pytest.mark.parametrize("field", ["memory_working_set_bytes", "memory_usage_bytes"])
def test_memory_holder_reports_what_it_holds(docker_host_e2e: DockerHostScenario, field: str) -> None:
    low, high = MEMORY_HELD_BYTES * 0.95, MEMORY_HELD_BYTES * 1.05
    mean = _settled_mean(
        docker_host_e2e, "memory_holder", field, lambda m: low <= m <= high, "128 MiB ± 5%", points=3
    )
    assert low <= mean <= high


def test_memory_limit_only_where_there_is_one(docker_host_e2e: DockerHostScenario) -> None:
    limit = _settled_mean(
        docker_host_e2e,
        "blog_db",
        "memory_limit_bytes",
        lambda m: _close(m, DB_MEMORY_LIMIT_BYTES),
        f"{DB_MEMORY_LIMIT_BYTES} (--memory 64m)",
        points=1,
    )
    assert _close(limit, DB_MEMORY_LIMIT_BYTES)
    # An unlimited container has no limit, not the host's RAM as one.
    assert _container_values(docker_host_e2e, "burner_full", "memory_limit_bytes") == []
    # Optional for the Docker source (not in the stats payload), but right when present.
    for value in _container_values(docker_host_e2e, "burner_limited", "cpu_limit_millicores"):
        assert _close(value, 500)


# ------------------------------------------------------------------------------------------- identity


def test_containers_get_their_namespace_pod_and_container(docker_host_e2e: DockerHostScenario) -> None:
    e2e = docker_host_e2e
    seen: set[Identity] = set()

    def all_seen() -> bool:
        rows = e2e.influx.rows(
            'SELECT last("memory_usage_bytes") FROM container GROUP BY "namespace", "pod", "container"'
        )
        seen.update(Identity(row["namespace"], row["pod"], row["container"]) for row in rows)
        return set(e2e.identities.values()) <= seen

    wait_until(
        all_seen,
        SETTLE_SECONDS,
        lambda: f"missing identities: {set(e2e.identities.values()) - seen}",
        every_seconds=1.0,
    )
    pod_containers = {i.container for i in seen if (i.namespace, i.pod) == (e2e.pod_namespace, e2e.pod_name)}
    assert pod_containers == {"app", "sidecar"}, "the pod sandbox is not a container of the pod"
    sandbox = e2e.containers["pod_sandbox"].name
    assert not [i for i in seen if sandbox in (i.pod, i.container)], "the sandbox must not show up on its own"


def test_pod_network_comes_from_its_sandbox(docker_host_e2e: DockerHostScenario) -> None:
    e2e = docker_host_e2e
    pod_where = f'"namespace" = {quote_string(e2e.pod_namespace)} AND "pod" = {quote_string(e2e.pod_name)}'
    pod_rows = e2e.influx.rows(f'SELECT count("network_rx_bytes_per_second") FROM pod WHERE {pod_where}')
    assert pod_rows, f"pod {e2e.pod_namespace}/{e2e.pod_name} has no network_rx_bytes_per_second"
    assert pod_rows[0]["count"] > 0
    # Its containers share the sandbox's network namespace: counting it per container would double it.
    assert (
        e2e.influx.rows(f'SELECT count("network_rx_bytes_per_second") FROM container WHERE {pod_where}') == []
    )


# -------------------------------------------------------------------------------------------- rollups


def test_pod_is_the_sum_of_its_containers(docker_host_e2e: DockerHostScenario) -> None:
    e2e = docker_host_e2e
    summed = _common_fields(Level.POD, Level.CONTAINER)
    problems, compared = _sum_problems(
        _all_rows(e2e, "pod"),
        _all_rows(e2e, "container"),
        lambda row: (row["node"], row["namespace"], row["pod"]),
        summed,
        catalog.CONTAINER_COUNT.name,
        own_network=True,
    )
    assert compared.get((e2e.node, e2e.pod_namespace, e2e.pod_name), 0) >= 3, compared
    assert not problems, f"{len(problems)} pod points differ from their containers:\n" + "\n".join(
        problems[:30]
    )


def test_namespace_is_the_sum_of_its_pods(docker_host_e2e: DockerHostScenario) -> None:
    e2e = docker_host_e2e
    problems, compared = _sum_problems(
        _all_rows(e2e, "namespace"),
        _all_rows(e2e, "pod"),
        lambda row: (row["cluster"], row["namespace"]),
        _common_fields(Level.NAMESPACE, Level.POD),
        catalog.POD_COUNT.name,
    )
    for namespace in ("shop", "blog", "default"):
        assert compared.get((e2e.cluster, namespace), 0) >= 3, compared
    assert not problems, f"{len(problems)} namespace points differ from their pods:\n" + "\n".join(
        problems[:30]
    )


def test_cluster_is_the_sum_of_its_nodes(docker_host_e2e: DockerHostScenario) -> None:
    e2e = docker_host_e2e
    problems, compared = _sum_problems(
        _all_rows(e2e, "cluster"),
        _all_rows(e2e, "node"),
        lambda row: (row["cluster"],),
        _common_fields(Level.CLUSTER, Level.NODE),
        catalog.NODE_COUNT.name,
    )
    assert compared.get((e2e.cluster,), 0) >= 3, compared
    assert not problems, f"{len(problems)} cluster points differ from their nodes:\n" + "\n".join(
        problems[:30]
    )


def test_node_counts_its_containers_and_pods(docker_host_e2e: DockerHostScenario) -> None:
    e2e = docker_host_e2e
    containers: dict[int, int] = defaultdict(int)
    pods: dict[int, int] = defaultdict(int)
    for row in _all_rows(e2e, "container"):
        containers[row["time"]] += 1
    for row in _all_rows(e2e, "pod"):
        pods[row["time"]] += 1
    node_rows = [row for row in _all_rows(e2e, "node") if row["time"] in containers]
    assert len(node_rows) >= 3
    for row in node_rows:
        assert row["container_count"] == containers[row["time"]], row
        assert row["pod_count"] == pods[row["time"]], row


def test_no_value_is_negative_or_beyond_capacity(docker_host_e2e: DockerHostScenario) -> None:
    _check_nothing_negative_or_beyond_capacity(docker_host_e2e)


# -------------------------------------------------------------------------------------------- catalog


def _measurements(e2e: DockerHostScenario) -> set[str]:
    return {row["name"] for row in e2e.influx.rows("SHOW MEASUREMENTS")}


def test_every_field_written_is_in_the_catalog(docker_host_e2e: DockerHostScenario) -> None:
    e2e = docker_host_e2e
    measurements = _measurements(e2e)
    assert measurements == {level.value for level in Level}
    for level in Level:
        allowed = {metric.name for metric in catalog.fields_for(level)}
        written = {
            row["fieldKey"]: row["fieldType"]
            for row in e2e.influx.rows(f"SHOW FIELD KEYS FROM {quote_ident(level.value)}")
        }
        assert set(written) <= allowed, f"{level.value}: not in the catalog: {sorted(set(written) - allowed)}"
        assert set(written.values()) == {"float"}, f"{level.value}: every field is a float: {written}"


def test_catalog_fields_a_docker_host_produces_are_written(docker_host_e2e: DockerHostScenario) -> None:
    e2e = docker_host_e2e
    for level, expected in EXPECTED_ON_DOCKER_HOST.items():
        assert expected <= {metric.name for metric in catalog.fields_for(level)}, "test out of date"
        written = {
            row["fieldKey"] for row in e2e.influx.rows(f"SHOW FIELD KEYS FROM {quote_ident(level.value)}")
        }
        assert expected <= written, f"{level.value}: never written: {sorted(expected - written)}"


def test_tags_match_the_catalog(docker_host_e2e: DockerHostScenario) -> None:
    e2e = docker_host_e2e
    for level in Level:
        measurement = quote_ident(level.value)
        keys = {row["tagKey"] for row in e2e.influx.rows(f"SHOW TAG KEYS FROM {measurement}")}
        required = {tag.value for tag in catalog.TAGS_BY_LEVEL[level]}
        allowed = {tag.value for tag in catalog.tags_for(level)}
        assert required <= keys <= allowed, f"{level.value}: tags {sorted(keys)}"
        for tag in required:
            untagged = e2e.influx.rows(f"SELECT count(*) FROM {measurement} WHERE {quote_ident(tag)} = ''")
            assert untagged == [], f"{level.value} points without {tag}: {untagged}"
    clusters = {row["value"] for row in e2e.influx.rows('SHOW TAG VALUES WITH KEY = "cluster"')}
    nodes = {row["value"] for row in e2e.influx.rows('SHOW TAG VALUES WITH KEY = "node"')}
    assert clusters == {e2e.cluster}
    assert nodes == {e2e.node}


# -------------------------------------------------------------------------------------------- --once


def test_collector_once_prints_one_scrape_as_points(docker_host_e2e: DockerHostScenario) -> None:
    e2e = docker_host_e2e
    done = subprocess.run(
        [sys.executable, "-m", "collector", "--once"],
        env=e2e.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    points = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert points, f"no output; stderr:\n{done.stderr}"
    for point in points:
        assert set(point) == {"measurement", "tags", "fields", "time"}, point
        assert all(isinstance(v, str) for v in point["tags"].values()), point
        assert all(isinstance(v, int | float) for v in point["fields"].values()), point
        assert isinstance(point["time"], int), point
    burner = e2e.identity("burner_full")
    assert any(point["tags"].get("container") == burner.container for point in points), done.stdout[:2000]


def test_running_collector_passes_its_liveness_probe(docker_host_e2e: DockerHostScenario) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "collector", "--check-heartbeat"],
        env=docker_host_e2e.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


# -------------------------------------------------------------------------------------------- restart


def test_restart_yields_no_negative_or_spiked_rate(docker_host_e2e: DockerHostScenario) -> None:
    """Kept last in the module: it restarts the limited burner, which the other tests measure."""
    e2e = docker_host_e2e
    role = "burner_limited"
    counter = catalog.CPU_USAGE_SECONDS_TOTAL.name
    before = _container_points(e2e, role, counter)
    assert before, "no CPU counter for the limited burner before the restart"
    restarted_after, last_before = before[-1]

    e2e.containers[role].restart(timeout=0)

    # The pipeline has seen the restart once the cumulative counter starts again from near zero.
    wait_until(
        lambda: any(v < last_before for v in _container_values(e2e, role, counter, after_ns=restarted_after)),
        SETTLE_SECONDS,
        f"{counter} of the restarted container never went below its value before the restart ({last_before})",
        every_seconds=1.0,
    )
    _settled_mean(
        e2e,
        role,
        "cpu_usage_millicores",
        lambda m: 475 <= m <= 525,
        "500 ± 25 again",
        after_ns=restarted_after,
    )
    rates = _container_values(e2e, role, "cpu_usage_millicores")
    assert min(rates) >= 0, rates
    assert max(rates) <= 525 + 25, f"a spike: {max(rates)} (all: {rates})"
    _check_nothing_negative_or_beyond_capacity(e2e)

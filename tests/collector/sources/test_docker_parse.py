"""The Docker payload parsers, driven by real engine captures; expectations are derived from the raw JSON."""

from __future__ import annotations

import calendar
import json
import time
from pathlib import Path
from typing import Any

import pytest

from collector.sources.docker_parse import (
    UNLIMITED_MEMORY_FLOOR_BYTES,
    ContainerEvent,
    ContainerInspect,
    ContainerListEntry,
    ContainerStats,
    InspectHostConfig,
    Role,
    build_samples,
    container_name,
    cpu_limit_millicores,
    memory_limit_bytes,
    parse_identity,
    parse_rfc3339_ns,
    parse_stats,
    samples_from_reading,
)
from collector.wire import Batch, NetworkCounters

FIXTURES = Path(__file__).parents[2] / "fixtures" / "docker"
SHARED_V1 = FIXTURES / "engine-20.10-cgroupv1"
OWN_V1 = FIXTURES / "engine-20.10.24-cgroupv1-kpulse"
EVENTS = FIXTURES / "engine-20.10.24-events-kpulse"
V2 = FIXTURES / "cgroupv2-otel"
MIB = 2**20

STATS_FILES = sorted(
    p
    for p in FIXTURES.glob("*/stats-*.json")
    if p.name not in ("stats-oneshot-exited.json", "stats-404-removed.json")
)


def raw(path: Path) -> Any:
    return json.loads(path.read_text())


def stats_of(path: Path) -> ContainerStats:
    return ContainerStats.model_validate_json(path.read_bytes())


def host_memory(folder: Path) -> int:
    value: int = raw(folder / "info.json")["MemTotal"]
    return value


def own(name: str) -> tuple[ContainerListEntry, ContainerInspect, ContainerStats]:
    """The list entry, inspect and stats of one container of the kpulse capture."""
    inspect = raw(OWN_V1 / f"inspect-{name}.json")
    entry = next(e for e in raw(OWN_V1 / "containers.json") if e["Id"] == inspect["Id"])
    return (
        ContainerListEntry.model_validate(entry),
        ContainerInspect.model_validate(inspect),
        stats_of(OWN_V1 / f"stats-oneshot-{name}.json"),
    )


def build_own(name: str, namespace: str = "default"):  # type: ignore[no-untyped-def]
    entry, inspect, stats = own(name)
    return build_samples(
        entry, inspect, stats, default_namespace=namespace, host_memory_bytes=host_memory(OWN_V1)
    )


# --- independent reference computations on the raw JSON ---------------------------------------------------


def reference_ns(text: str) -> int:
    """RFC 3339 "...Z" to ns via time.strptime on the whole seconds plus the digits of the fraction."""
    assert text.endswith("Z")
    whole, _, fraction = text[:-1].partition(".")
    seconds = calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S"))
    return seconds * 10**9 + int(fraction.ljust(9, "0") or "0")


def reference_network(payload: dict[str, Any]) -> dict[str, int] | None:
    networks = payload.get("networks")
    if not networks:
        return None
    keys = (
        "rx_bytes",
        "tx_bytes",
        "rx_packets",
        "tx_packets",
        "rx_errors",
        "tx_errors",
        "rx_dropped",
        "tx_dropped",
    )
    return {f"{k}_total": sum(iface[k] for iface in networks.values()) for k in keys}


def reference_blkio(payload: dict[str, Any], op: str) -> int | None:
    rows = (payload.get("blkio_stats") or {}).get("io_service_bytes_recursive")
    if not rows:
        return None
    return sum(int(r["value"]) for r in rows if r["op"] in (op, op.capitalize()))


def reference_memory(payload: dict[str, Any]) -> tuple[int, int, int, int]:
    memory = payload["memory_stats"]
    details = memory["stats"]
    if "total_rss" in details:  # cgroup v1
        inactive, rss, cache = details["total_inactive_file"], details["total_rss"], details["total_cache"]
    else:
        inactive, rss, cache = details["inactive_file"], details["anon"], details["file"]
    return memory["usage"], max(memory["usage"] - inactive, 0), rss, cache


# --- timestamps -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", STATS_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_read_timestamp_keeps_every_nanosecond(path: Path) -> None:
    text = raw(path)["read"]
    assert parse_rfc3339_ns(text) == reference_ns(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1970-01-01T00:00:00Z", 0),
        ("1970-01-01T00:00:01.000000001Z", 1_000_000_001),
        ("2026-11-22T16:01:57.81230039Z", reference_ns("2026-11-22T16:01:57.81230039Z")),  # Go drops zeros
        ("2026-11-22T16:01:57.5Z", reference_ns("2026-11-22T16:01:57Z") + 500_000_000),
        ("2026-11-22T17:01:57.123456789+01:00", reference_ns("2026-11-22T16:01:57.123456789Z")),
        ("2026-11-22T10:31:57.123456789-05:30", reference_ns("2026-11-22T16:01:57.123456789Z")),
    ],
)
def test_rfc3339_parser(text: str, expected: int) -> None:
    assert parse_rfc3339_ns(text) == expected


def test_go_zero_time_is_before_the_epoch() -> None:
    assert parse_rfc3339_ns("0001-01-01T00:00:00Z") < 0


@pytest.mark.parametrize(
    "text",
    ["", "2026-11-22", "2026-11-22T16:01:57", "2026-13-01T00:00:00Z", "2026-11-22T16:01:57.1234567890Z"],
)
def test_rfc3339_parser_refuses_malformed_input(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339|month"):
        parse_rfc3339_ns(text)


# --- stats ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", STATS_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_parse_stats_matches_the_raw_payload(path: Path) -> None:
    payload = raw(path)
    reading = parse_stats(stats_of(path))
    assert reading is not None
    cpu = payload["cpu_stats"]
    assert reading.timestamp_ns == reference_ns(payload["read"])
    assert reading.cpu_usage_ns == cpu["cpu_usage"]["total_usage"]
    assert reading.cpu_user_ns == cpu["cpu_usage"]["usage_in_usermode"]
    assert reading.cpu_system_ns == cpu["cpu_usage"]["usage_in_kernelmode"]
    assert reading.cpu_periods == cpu["throttling_data"]["periods"]
    assert reading.cpu_throttled_periods == cpu["throttling_data"]["throttled_periods"]
    assert reading.cpu_throttled_ns == cpu["throttling_data"]["throttled_time"]
    usage, working_set, rss, cache = reference_memory(payload)
    assert reading.memory.usage_bytes == usage
    assert reading.memory.working_set_bytes == working_set
    assert reading.memory.rss_bytes == rss
    assert reading.memory.cache_bytes == cache
    assert reading.memory_reported_limit_bytes == payload["memory_stats"]["limit"]
    expected_network = reference_network(payload)
    assert (reading.network.model_dump() if reading.network else None) == expected_network
    assert reading.disk_read_bytes == reference_blkio(payload, "read")
    assert reading.disk_write_bytes == reference_blkio(payload, "write")
    assert reading.process_count == payload["pids_stats"]["current"]


def test_v1_working_set_leaves_out_inactive_page_cache() -> None:
    # kph1-pagecache wrote 48 MiB through the page cache; most of it sits on the inactive list.
    payload = raw(OWN_V1 / "stats-oneshot-pagecache.json")
    reading = parse_stats(stats_of(OWN_V1 / "stats-oneshot-pagecache.json"))
    assert reading is not None
    usage = payload["memory_stats"]["usage"]
    inactive = payload["memory_stats"]["stats"]["total_inactive_file"]
    assert inactive > 32 * MIB
    assert reading.memory.working_set_bytes == usage - inactive
    assert reading.memory.working_set_bytes is not None
    assert reading.memory.working_set_bytes < usage // 2
    assert reading.memory.cache_bytes == payload["memory_stats"]["stats"]["total_cache"]


def test_v1_shmem_counts_in_the_working_set() -> None:
    # 64 MiB in /dev/shm is cache that cannot be dropped: it is not inactive file, so it stays in.
    reading = parse_stats(stats_of(OWN_V1 / "stats-oneshot-memhold.json"))
    assert reading is not None
    assert reading.memory.working_set_bytes is not None
    assert reading.memory.working_set_bytes >= 64 * MIB
    assert reading.memory.cache_bytes is not None
    assert reading.memory.cache_bytes >= 64 * MIB


def test_v2_memory_uses_the_unprefixed_keys() -> None:
    payload = raw(V2 / "stats-oneshot.json")
    details = payload["memory_stats"]["stats"]
    reading = parse_stats(stats_of(V2 / "stats-oneshot.json"))
    assert reading is not None
    assert "total_inactive_file" not in details
    assert reading.memory.working_set_bytes == payload["memory_stats"]["usage"] - details["inactive_file"]
    assert reading.memory.rss_bytes == details["anon"]
    assert reading.memory.cache_bytes == details["file"]


def test_working_set_is_floored_at_zero() -> None:
    stats = ContainerStats.model_validate(
        {"read": "2026-01-01T00:00:00Z", "memory_stats": {"usage": 100, "stats": {"inactive_file": 150}}}
    )
    reading = parse_stats(stats)
    assert reading is not None
    assert reading.memory.working_set_bytes == 0


def test_absent_fields_are_none_never_zero() -> None:
    reading = parse_stats(ContainerStats.model_validate({"read": "2026-01-01T00:00:00Z"}))
    assert reading is not None
    values = [
        reading.cpu_usage_ns,
        reading.cpu_user_ns,
        reading.cpu_system_ns,
        reading.cpu_periods,
        reading.cpu_throttled_periods,
        reading.cpu_throttled_ns,
        reading.memory.usage_bytes,
        reading.memory.working_set_bytes,
        reading.memory.rss_bytes,
        reading.memory.cache_bytes,
        reading.memory_reported_limit_bytes,
        reading.network,
        reading.disk_read_bytes,
        reading.disk_write_bytes,
        reading.process_count,
    ]
    assert values == [None] * len(values)


def test_memory_without_details_has_usage_but_no_working_set() -> None:
    reading = parse_stats(
        ContainerStats.model_validate({"read": "2026-01-01T00:00:00Z", "memory_stats": {"usage": 5}})
    )
    assert reading is not None
    assert reading.memory.usage_bytes == 5
    assert reading.memory.working_set_bytes is None


def test_real_block_io_is_summed_over_devices() -> None:
    # kph1-blkio wrote then read 32 MiB with O_DIRECT (dd bs=1M count=32).
    reading = parse_stats(stats_of(OWN_V1 / "stats-oneshot-blkio.json"))
    assert reading is not None
    assert reading.disk_read_bytes == 32 * MIB
    assert reading.disk_write_bytes == 32 * MIB


def test_v2_block_io_has_lower_case_ops() -> None:
    payload = raw(V2 / "stats-oneshot.json")
    reading = parse_stats(stats_of(V2 / "stats-oneshot.json"))
    assert reading is not None
    assert reading.disk_read_bytes == reference_blkio(payload, "read") == 167936
    assert reading.disk_write_bytes == 0


@pytest.mark.parametrize("rows", [[], None])
def test_unaccounted_block_io_is_none(rows: list[object] | None) -> None:
    # [] is what cgroup v1 shows even after real I/O when the cgroup has no throttle rule (fixture README).
    stats = ContainerStats.model_validate(
        {"read": "2026-01-01T00:00:00Z", "blkio_stats": {"io_service_bytes_recursive": rows}}
    )
    reading = parse_stats(stats)
    assert reading is not None
    assert (reading.disk_read_bytes, reading.disk_write_bytes) == (None, None)


def test_network_is_summed_over_interfaces() -> None:
    ifaces = {
        "eth0": {"rx_bytes": 10, "tx_bytes": 1, "rx_packets": 2, "tx_packets": 1, "rx_dropped": 3},
        "eth1": {"rx_bytes": 5, "tx_bytes": 4, "rx_packets": 1, "tx_packets": 2},
    }
    reading = parse_stats(ContainerStats.model_validate({"read": "2026-01-01T00:00:00Z", "networks": ifaces}))
    assert reading is not None
    assert reading.network == NetworkCounters(
        rx_bytes_total=15, tx_bytes_total=5, rx_packets_total=3, tx_packets_total=3, rx_dropped_total=3
    )


def test_exited_container_reads_as_not_running() -> None:
    # The engine answers 200 with a zero "read" for a container that stopped after the listing.
    stats = stats_of(OWN_V1 / "stats-oneshot-exited.json")
    assert parse_stats(stats) is None
    entry, inspect, _ = own("idle")
    assert build_samples(entry, inspect, stats, default_namespace="default", host_memory_bytes=None) is None


@pytest.mark.parametrize(
    ("earlier", "later", "limit_millicores"),
    [
        (SHARED_V1 / "stats-oneshot-fx-app.json", SHARED_V1 / "stats-oneshot-fx-app-5s-later.json", 500),
        (OWN_V1 / "stats-oneshot-busy.json", OWN_V1 / "stats-oneshot-busy-10s-later.json", 250),
    ],
    ids=["fx-app --cpus 0.5", "busy quota 25000/100000"],
)
def test_cpu_rate_between_two_one_shot_reads_matches_the_limit(
    earlier: Path, later: Path, limit_millicores: int
) -> None:
    first, second = parse_stats(stats_of(earlier)), parse_stats(stats_of(later))
    assert first is not None
    assert second is not None
    assert first.cpu_usage_ns is not None
    assert second.cpu_usage_ns is not None
    millicores = (
        (second.cpu_usage_ns - first.cpu_usage_ns) / (second.timestamp_ns - first.timestamp_ns) * 1000
    )
    # Both burners were held at their CFS quota the whole time.
    assert millicores == pytest.approx(limit_millicores, rel=0.05)


# --- limits -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("folder", "name", "expected"),
    [
        (OWN_V1, "busy", 25000 * 1000 // 100000),  # --cpu-quota 25000 --cpu-period 100000
        (OWN_V1, "app", 500),  # --cpus 0.5
        (SHARED_V1, "fx-app", 500),  # --cpus 0.5
        (OWN_V1, "idle", None),
        (SHARED_V1, "fx-sandbox", None),
    ],
)
def test_cpu_limit_from_inspect(folder: Path, name: str, expected: int | None) -> None:
    inspect = ContainerInspect.model_validate(raw(folder / f"inspect-{name}.json"))
    assert cpu_limit_millicores(inspect.host_config) == expected


@pytest.mark.parametrize(
    ("host_config", "expected"),
    [
        ({"CpuQuota": 150000, "CpuPeriod": 0}, 1500),  # the engine's default period is 100 ms
        ({"CpuQuota": 30000, "CpuPeriod": 50000}, 600),
        ({"CpuQuota": -1, "CpuPeriod": 100000}, None),
        ({"NanoCpus": 1_500_000_000, "CpuQuota": 0}, 1500),
        ({}, None),
    ],
)
def test_cpu_limit_rules(host_config: dict[str, int], expected: int | None) -> None:
    assert cpu_limit_millicores(InspectHostConfig.model_validate(host_config)) == expected


def test_configured_memory_limit_is_preferred() -> None:
    _, inspect, stats = own("memhold")  # -m 256m
    assert inspect.host_config is not None
    assert stats.memory_stats is not None
    limit = memory_limit_bytes(inspect.host_config.memory, stats.memory_stats.limit, host_memory_bytes=None)
    assert limit == 256 * MIB


@pytest.mark.parametrize("name", ["idle", "busy", "sandbox", "compose"])
def test_unlimited_container_reports_no_limit(name: str) -> None:
    _, inspect, stats = own(name)
    assert inspect.host_config is not None
    assert stats.memory_stats is not None
    # The engine reports the host's RAM as the "limit" of an unlimited container.
    assert stats.memory_stats.limit == host_memory(OWN_V1)
    limit = memory_limit_bytes(
        inspect.host_config.memory, stats.memory_stats.limit, host_memory_bytes=host_memory(OWN_V1)
    )
    assert limit is None


def test_cgroup_v1_no_limit_value_is_unlimited() -> None:
    no_limit = raw(SHARED_V1 / "stats-oneshot-fx-app.json")["memory_stats"]["stats"][
        "hierarchical_memory_limit"
    ]
    assert no_limit >= UNLIMITED_MEMORY_FLOOR_BYTES
    assert memory_limit_bytes(0, no_limit, host_memory_bytes=2**80) is None


def test_reported_limit_below_host_memory_is_a_limit() -> None:
    # cgroup v2 capture: 256 MiB limit, none configured in this payload's container (a parent cgroup limit).
    reported = raw(V2 / "stats-oneshot.json")["memory_stats"]["limit"]
    assert memory_limit_bytes(None, reported, host_memory_bytes=8 * 2**30) == reported == 256 * MIB
    # Without the host's RAM a reported limit cannot be trusted.
    assert memory_limit_bytes(None, reported, host_memory_bytes=None) is None


# --- identity ---------------------------------------------------------------------------------------------


def test_identity_of_the_kpulse_capture() -> None:
    by_name = {}
    for name in ("busy", "memhold", "idle", "sandbox", "app", "compose", "blkio", "pagecache"):
        entry, inspect, _ = own(name)
        by_name[name] = parse_identity(entry, inspect, default_namespace="dflt")
    labels = raw(OWN_V1 / "inspect-app.json")["Config"]["Labels"]

    sandbox = by_name.pop("sandbox")
    assert sandbox.role is Role.SANDBOX
    assert (sandbox.namespace, sandbox.pod, sandbox.container) == (
        labels["io.kubernetes.pod.namespace"],
        labels["io.kubernetes.pod.name"],
        "POD",
    )
    app = by_name.pop("app")
    assert app.role is Role.POD_CONTAINER
    assert (app.namespace, app.pod, app.container, app.pod_uid) == (
        labels["io.kubernetes.pod.namespace"],
        labels["io.kubernetes.pod.name"],
        labels["io.kubernetes.container.name"],
        labels["io.kubernetes.pod.uid"],
    )
    compose = by_name.pop("compose")
    assert compose.role is Role.PLAIN
    assert (compose.namespace, compose.pod, compose.container) == ("blog", "kph1-compose", "kph1-compose")
    for name, identity in by_name.items():
        assert identity.role is Role.PLAIN
        assert (identity.namespace, identity.pod, identity.container) == (
            "dflt",
            f"kph1-{name}",
            f"kph1-{name}",
        )


def test_identity_of_the_shared_capture_with_fifty_pod_containers() -> None:
    roles: dict[Role, int] = {}
    for raw_entry in raw(SHARED_V1 / "containers.json"):
        entry = ContainerListEntry.model_validate(raw_entry)
        identity = parse_identity(entry, None, default_namespace="default")
        roles[identity.role] = roles.get(identity.role, 0) + 1
        labels = raw_entry["Labels"]
        if "io.kubernetes.pod.name" in labels:
            assert identity.pod == labels["io.kubernetes.pod.name"]
            assert identity.namespace == labels["io.kubernetes.pod.namespace"]
    # 50 idle containers labelled like the kubelet's (no docker.type label), fx-app, fx-sandbox, fx-compose.
    assert roles == {Role.POD_CONTAINER: 51, Role.SANDBOX: 1, Role.PLAIN: 1}


def test_old_kubelet_sandbox_is_known_by_its_container_name() -> None:
    entry = ContainerListEntry.model_validate(
        {
            "Id": "a" * 64,
            "Names": ["/k8s_POD_web_shop_uid_0"],
            "Labels": {
                "io.kubernetes.pod.namespace": "shop",
                "io.kubernetes.pod.name": "web",
                "io.kubernetes.container.name": "POD",
            },
        }
    )
    assert parse_identity(entry, None, default_namespace="default").role is Role.SANDBOX


def test_container_name_ignores_link_aliases() -> None:
    entry = ContainerListEntry.model_validate({"Id": "b" * 64, "Names": ["/web/db", "/db"]})
    assert container_name(entry) == "db"
    assert container_name(ContainerListEntry.model_validate({"Id": "c" * 64, "Names": []})) == "c" * 12


def test_labels_fall_back_to_inspect_when_the_entry_has_none() -> None:
    entry = ContainerListEntry.model_validate({"Id": "d" * 64, "Names": ["/x"]})
    inspect = ContainerInspect.model_validate(
        {"Id": "d" * 64, "Config": {"Labels": {"com.docker.compose.project": "p"}}}
    )
    assert parse_identity(entry, inspect, default_namespace="default").namespace == "p"


# --- samples ----------------------------------------------------------------------------------------------


def test_sandbox_becomes_the_pods_network_only() -> None:
    samples = build_own("sandbox")
    assert samples is not None
    assert samples.container is None
    pod = samples.pod
    assert pod is not None
    payload = raw(OWN_V1 / "stats-oneshot-sandbox.json")
    assert pod.pod_id == payload["id"]
    assert (pod.namespace, pod.pod) == ("shop", "web-5c9f7d8b4-q7k2m")
    assert pod.network is not None
    assert pod.network.model_dump() == reference_network(payload)
    assert pod.timestamp_ns == reference_ns(payload["read"])
    assert pod.labels is None  # the sandbox carries only the kubelet's bookkeeping labels


def test_sandbox_passes_the_pods_own_labels() -> None:
    entry, inspect, stats = own("sandbox")
    labels = {**(entry.labels or {}), "app": "web", "annotation.kubernetes.io/config.seen": "x"}
    entry = entry.model_copy(update={"labels": labels})
    samples = build_samples(entry, inspect, stats, default_namespace="default", host_memory_bytes=None)
    assert samples is not None
    assert samples.pod is not None
    assert samples.pod.labels == {"app": "web"}


def test_pod_container_has_no_network_of_its_own() -> None:
    samples = build_own("app")
    assert samples is not None
    assert samples.pod is None
    container = samples.container
    assert container is not None
    inspect = raw(OWN_V1 / "inspect-app.json")
    # This engine repeats the sandbox's interface counters for a container sharing its netns.
    assert raw(OWN_V1 / "stats-oneshot-app.json")["networks"]
    assert container.network is None
    assert (container.namespace, container.pod, container.container) == ("shop", "web-5c9f7d8b4-q7k2m", "app")
    assert container.cpu_limit_millicores == inspect["HostConfig"]["NanoCpus"] // 10**6
    assert container.memory_limit_bytes == inspect["HostConfig"]["Memory"] == 64 * MIB
    assert container.started_at_ns == reference_ns(inspect["State"]["StartedAt"])
    assert container.restart_count == inspect["RestartCount"]


@pytest.mark.parametrize("name", ["idle", "busy", "memhold", "blkio", "pagecache"])
def test_plain_container_is_its_own_pod(name: str) -> None:
    samples = build_own(name)
    assert samples is not None
    container, pod = samples
    assert container is not None
    assert pod is not None
    payload = raw(OWN_V1 / f"stats-oneshot-{name}.json")
    assert container.container_id == pod.pod_id == payload["id"]
    assert container.pod == pod.pod == container.container == f"kph1-{name}"
    assert container.namespace == pod.namespace == "default"
    assert container.network is not None
    assert container.network == pod.network
    assert container.network.model_dump() == reference_network(payload)
    assert container.timestamp_ns == pod.timestamp_ns == reference_ns(payload["read"])
    assert container.cpu_usage_nanoseconds_total == payload["cpu_stats"]["cpu_usage"]["total_usage"]


def test_compose_container_lands_in_its_project() -> None:
    samples = build_own("compose", namespace="ignored")
    assert samples is not None
    assert samples.container is not None
    assert samples.pod is not None
    assert samples.container.namespace == samples.pod.namespace == "blog"
    assert samples.pod.labels == raw(OWN_V1 / "inspect-compose.json")["Config"]["Labels"]


def test_whole_capture_round_trips_through_the_wire() -> None:
    containers, pods = [], []
    for raw_entry in raw(OWN_V1 / "containers.json"):
        name = raw_entry["Names"][0].removeprefix("/kph1-")
        samples = build_own(name)
        assert samples is not None
        if samples.container is not None:
            containers.append(samples.container)
        if samples.pod is not None:
            pods.append(samples.pod)
    # Eight containers: six plain (container + pod each), one pod container, one sandbox (pod only).
    assert (len(containers), len(pods)) == (7, 7)
    assert sum(1 for p in pods if p.namespace == "shop") == 1
    batch = Batch(
        batch_id="n1-1",
        node="n1",
        source="docker",
        scraped_at_ns=1,
        interval_seconds=10,
        containers=containers,
        pods=pods,
    )
    assert Batch.model_validate_json(batch.model_dump_json(exclude_none=True)) == batch


def test_samples_from_a_parsed_reading_are_the_samples_of_the_payload() -> None:
    for name in ("busy", "sandbox", "app", "compose"):
        entry, inspect, stats = own(name)
        reading = parse_stats(stats)
        assert reading is not None
        direct = samples_from_reading(
            entry, inspect, reading, default_namespace="default", host_memory_bytes=host_memory(OWN_V1)
        )
        assert direct == build_own(name)


# --- events -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(EVENTS.glob("event-*.json")), ids=lambda p: p.name)
def test_event_names_its_container(path: Path) -> None:
    payload = raw(path)
    event = ContainerEvent.model_validate(payload)
    assert event.action == payload["Action"]
    assert event.container_id == payload["Actor"]["ID"]
    # Engines before API 1.22 sent only the top-level id.
    legacy = {key: value for key, value in payload.items() if key != "Actor"}
    assert ContainerEvent.model_validate(legacy).container_id == payload["id"]


def test_event_without_an_id_names_no_container() -> None:
    payload = raw(EVENTS / "event-update.json")
    bare = {key: value for key, value in payload.items() if key not in ("Actor", "id")}
    assert ContainerEvent.model_validate(bare).container_id is None

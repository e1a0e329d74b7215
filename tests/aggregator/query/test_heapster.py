"""The Heapster name table: every name the issue lists, mapped to a catalog field in the same unit."""

from __future__ import annotations

from aggregator import catalog
from aggregator.catalog import Level
from aggregator.query.heapster import BY_FIELD, HEAPSTER_METRICS, SERVED_FIELDS, metrics_for

_UNIT_BY_GROUP = {"cpu": "millicores", "memory": "bytes", "filesystem": "bytes", "disk": "bytes/s"}


def test_the_names_heapster_clients_use_are_all_there() -> None:
    for name in (
        "cpu/usage_rate",
        "memory/usage",
        "memory/working_set",
        "memory/rss",
        "memory/cache",
        "network/rx_rate",
        "network/tx_rate",
        "network/rx_errors_rate",
        "network/tx_errors_rate",
        "cpu/request",
        "cpu/limit",
        "memory/request",
        "memory/limit",
        "cpu/node_capacity",
        "memory/node_capacity",
        "cpu/node_allocatable",
        "memory/node_allocatable",
        "filesystem/usage",
        "filesystem/limit",
        "restart_count",
    ):
        assert name in HEAPSTER_METRICS, name


def test_every_name_maps_to_a_catalog_field_in_heapsters_unit() -> None:
    assert HEAPSTER_METRICS["cpu/usage_rate"].field == catalog.CPU_USAGE_MILLICORES.name
    assert HEAPSTER_METRICS["memory/working_set"].field == catalog.MEMORY_WORKING_SET_BYTES.name
    assert HEAPSTER_METRICS["filesystem/limit"].field == catalog.FS_CAPACITY_BYTES.name
    for name, entry in HEAPSTER_METRICS.items():
        assert catalog.BY_NAME[entry.field] is entry.metric
        group = name.split("/")[0]
        if group in _UNIT_BY_GROUP:
            assert entry.metric.unit == _UNIT_BY_GROUP[group], name
        if name.startswith("network/"):
            assert entry.metric.unit in {"bytes/s", "errors/s"}, name
    assert len(BY_FIELD) == len(HEAPSTER_METRICS), "one Heapster name per field"


def test_levels_come_from_the_catalog() -> None:
    node = {entry.name for entry in metrics_for(Level.NODE)}
    pod = {entry.name for entry in metrics_for(Level.POD)}
    assert {"cpu/node_capacity", "memory/node_allocatable", "cpu/usage_rate"} <= node
    assert "memory/rss" not in node  # the catalog has no node RSS
    assert "cpu/node_capacity" not in pod
    assert {"network/rx_errors_rate", "memory/limit"} <= pod


def test_the_store_keeps_exactly_the_served_fields() -> None:
    assert set(SERVED_FIELDS) == {entry.field for entry in HEAPSTER_METRICS.values()}
    # metrics.k8s.io reads these two.
    assert {catalog.CPU_USAGE_MILLICORES.name, catalog.MEMORY_WORKING_SET_BYTES.name} <= set(SERVED_FIELDS)

"""The catalog is self-consistent, covers the issue's schema contract, and docs/schema.md matches it."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator import catalog
from aggregator.catalog import Kind, Level, Tag, fields_for
from aggregator.schema_doc import render

ROOT = Path(__file__).resolve().parents[2]

_UNIT_SUFFIXES = {
    "millicores": "_millicores",
    "bytes": "_bytes",
    "bytes/s": "_bytes_per_second",
    "packets/s": "_per_second",
    "errors/s": "_errors_per_second",
    "seconds": "_seconds_total",
    "ratio": "_ratio",
}


def test_docs_schema_is_generated_from_the_catalog() -> None:
    committed = (ROOT / "docs" / "schema.md").read_text()
    assert committed == render(), "docs/schema.md is stale: python -m aggregator.schema_doc > docs/schema.md"


@pytest.mark.parametrize("metric", catalog.METRICS, ids=lambda metric: metric.name)
def test_every_field_name_carries_its_unit(metric: catalog.Metric) -> None:
    suffix = _UNIT_SUFFIXES.get(metric.unit, "_count")
    assert metric.name.endswith(suffix), f"{metric.name} ({metric.unit}) should end in {suffix}"
    if metric.name.endswith("_per_second"):
        assert metric.kind is Kind.RATE
    if metric.kind is Kind.RATE:
        assert metric.name.endswith(("_per_second", "_millicores", "_ratio"))
    if metric.kind is Kind.COUNTER:
        assert metric.name.endswith("_total")
    assert metric.levels, f"{metric.name} is on no level"
    assert metric.description.endswith(".")


def test_names_are_unique() -> None:
    assert len({metric.name for metric in catalog.METRICS}) == len(catalog.METRICS)


_REQUIRED_EVERYWHERE = {
    "cpu_usage_millicores",
    "memory_usage_bytes",
    "memory_working_set_bytes",
    "network_rx_bytes_per_second",
    "network_tx_bytes_per_second",
}
_REQUIRED_BY_LEVEL = {
    Level.CONTAINER: {"cpu_usage_seconds_total", "memory_rss_bytes", "memory_limit_bytes"},
    Level.NODE: {"cpu_capacity_millicores", "memory_capacity_bytes"},
    Level.CLUSTER: {"cpu_capacity_millicores", "memory_capacity_bytes"},
}


@pytest.mark.parametrize("level", list(Level))
def test_schema_contract_fields_exist_at_each_level(level: Level) -> None:
    names = {metric.name for metric in fields_for(level)}
    assert _REQUIRED_EVERYWHERE | _REQUIRED_BY_LEVEL.get(level, set()) <= names


def test_schema_contract_tags() -> None:
    assert catalog.TAGS_BY_LEVEL == {
        Level.CONTAINER: (Tag.CLUSTER, Tag.NODE, Tag.NAMESPACE, Tag.POD, Tag.CONTAINER),
        Level.POD: (Tag.CLUSTER, Tag.NODE, Tag.NAMESPACE, Tag.POD),
        Level.NAMESPACE: (Tag.CLUSTER, Tag.NAMESPACE),
        Level.NODE: (Tag.CLUSTER, Tag.NODE),
        Level.CLUSTER: (Tag.CLUSTER,),
    }
    assert [str(level) for level in Level] == ["container", "pod", "namespace", "node", "cluster"]

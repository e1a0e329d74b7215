"""The shared panels read what each dashboard's scope selects, and refuse a scope of the wrong entity."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from aggregator.catalog import Level, Tag
from dashboards import panels
from dashboards.errors import DefinitionError
from dashboards.house import Link, Scoped, Uid

IN_NAMESPACE = (Tag.CLUSTER, Tag.NAMESPACE)
PER_POD = Scoped(Level.POD, where=IN_NAMESPACE, by=(Tag.POD,))
PER_CONTAINER = Scoped(Level.CONTAINER, where=(*IN_NAMESPACE, Tag.POD), by=(Tag.CONTAINER,))
TO_POD = Link("Pod", Uid.POD, keep=IN_NAMESPACE, take=(Tag.POD,))


def test_pods_table_reduces_the_range_per_pod_and_links_each_row() -> None:
    panel = panels.pods_table("Pods", PER_POD, TO_POD).to_json_data()
    queries = [target.query for target in panel["targets"]]
    assert all(' FROM "pod" WHERE $timeFilter AND "cluster" =~ /^$cluster$/' in query for query in queries)
    assert all(query.endswith(' GROUP BY "pod"') for query in queries), "one row per pod, no time buckets"
    assert [query.split("(", 1)[0] for query in queries] == [
        "SELECT mean",
        "SELECT mean",
        "SELECT max",
        "SELECT last",
    ]
    (link_override,) = [
        override
        for override in panel["fieldConfig"]["overrides"]
        if override["properties"][0]["id"] == "links"
    ]
    assert link_override["matcher"] == {"id": "byName", "options": "pod"}
    (link,) = link_override["properties"][0]["value"]
    assert link["title"] == "Pod ${__data.fields.pod}"
    assert "var-pod=${__data.fields.pod}" in link["url"]


def test_container_panels_draw_one_series_per_container_of_the_scope() -> None:
    for panel in (panels.memory_composition(PER_CONTAINER), panels.processes(PER_CONTAINER)):
        data = panel.to_json_data()
        for target in data["targets"]:
            assert target.query.startswith("SELECT ")
            assert ' FROM "container" ' in target.query
            assert '"pod" =~ /^$pod$/' in target.query
            assert 'GROUP BY time($__interval), "container" fill(null)' in target.query
            assert target.alias.startswith("$tag_container")


@pytest.mark.parametrize(
    "make",
    [
        lambda: panels.pods_table("Pods", Scoped(Level.POD, where=IN_NAMESPACE), TO_POD),
        lambda: panels.pods_table(
            "Pods", Scoped(Level.POD, where=(Tag.CLUSTER,), by=(Tag.POD, Tag.NODE)), TO_POD
        ),
        lambda: panels.memory_composition(PER_POD),
        lambda: panels.processes(Scoped(Level.CONTAINER, where=IN_NAMESPACE)),
    ],
    ids=["no entity", "pod not last", "pods for containers", "one total for containers"],
)
def test_a_scope_of_the_wrong_entity_breaks_the_build(make: Callable[[], object]) -> None:
    with pytest.raises(DefinitionError, match="needs a scope grouped by"):
        make()

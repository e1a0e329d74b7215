"""Every dashboard file executes, and its JSON holds together: layout, datasource, units, catalog names,
variables, links, and rollups that are never averaged across entities."""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from typing import Any

import pytest

from aggregator import catalog
from aggregator.catalog import Level, Tag
from dashboards import house
from dashboards.generate import DASHBOARD_NAMES, dashboards
from dashboards.influxql import References
from dashboards.proof import PanelQuery, iter_panels, iter_queries, iter_variable_queries

DASHBOARDS = dashboards()
QUERIES = [query for dashboard in DASHBOARDS.values() for query in iter_queries(dashboard)]
BUILTINS = {"timeFilter", "__interval", "__interval_ms", "interval"}
IDENTITY: Mapping[Level, tuple[Tag, ...]] = {
    Level.CONTAINER: (Tag.CLUSTER, Tag.NAMESPACE, Tag.POD, Tag.CONTAINER),
    Level.POD: (Tag.CLUSTER, Tag.NAMESPACE, Tag.POD),
    Level.NAMESPACE: (Tag.CLUSTER, Tag.NAMESPACE),
    Level.NODE: (Tag.CLUSTER, Tag.NODE),
    Level.CLUSTER: (Tag.CLUSTER,),
}
"""The tags that name one entity of a level (a pod is a pod whichever node it ran on)."""


def _ids(items: Mapping[str, Any]) -> list[str]:
    return list(items)


def _variables(dashboard: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def _content_panels(dashboard: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [panel for panel in iter_panels(dashboard) if panel["type"] != "row"]


@pytest.mark.parametrize("name", DASHBOARD_NAMES)
def test_every_dashboard_file_executes_and_builds_the_same_dashboard_twice(name: str) -> None:
    module = importlib.import_module(f"dashboards.{name}")
    assert house.render(module.build()) == house.render(module.dashboard)


@pytest.mark.parametrize("name", DASHBOARD_NAMES)
def test_dashboard_identity(name: str) -> None:
    dashboard = DASHBOARDS[name]
    assert dashboard["schemaVersion"] == house.SCHEMA_VERSION
    assert dashboard["uid"] == f"kpulse-{name}"
    assert dashboard["uid"] in set(house.Uid)
    assert dashboard["title"].startswith("kpulse / ")
    assert house.DASHBOARD_TAG in dashboard["tags"]
    assert dashboard["id"] is None
    assert dashboard["description"]


@pytest.mark.parametrize("name", DASHBOARD_NAMES)
def test_panel_ids_are_unique(name: str) -> None:
    ids = [panel["id"] for panel in iter_panels(DASHBOARDS[name])]
    assert len(ids) == len(set(ids))
    assert all(isinstance(panel_id, int) and panel_id > 0 for panel_id in ids)


@pytest.mark.parametrize("name", DASHBOARD_NAMES)
def test_grid_positions_fit_and_do_not_overlap(name: str) -> None:
    cells: dict[tuple[int, int], str] = {}
    panels = iter_panels(DASHBOARDS[name])
    assert panels[0]["type"] == "row", "a dashboard starts with a row header"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["w"] > 0
        assert grid["h"] > 0
        assert grid["x"] >= 0
        assert grid["x"] + grid["w"] <= 24
        if panel["type"] == "row":
            assert (grid["x"], grid["w"], grid["h"]) == (0, 24, 1)
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r} at {(x, y)}"
                cells[(x, y)] = panel["title"]


@pytest.mark.parametrize("name", DASHBOARD_NAMES)
def test_every_panel_names_the_datasource_and_a_unit(name: str) -> None:
    for panel in _content_panels(DASHBOARDS[name]):
        assert panel["datasource"] == house.datasource_ref(), panel["title"]
        assert panel["fieldConfig"]["defaults"]["unit"], f"{panel['title']!r} has no unit"
        assert panel["targets"], f"{panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == house.datasource_ref()
            assert target["rawQuery"] is True
            assert target["query"]
            assert target["resultFormat"] in ("time_series", "table")
        assert panel["description"], f"{panel['title']!r} has no description"


def _metric(name: str) -> catalog.Metric:
    assert name in catalog.BY_NAME, f"{name!r} is not a catalog field"
    return catalog.BY_NAME[name]


@pytest.mark.parametrize("name", DASHBOARD_NAMES)
def test_units_follow_the_catalog(name: str) -> None:
    for panel in _content_panels(DASHBOARDS[name]):
        queries = [query for query in iter_queries({"uid": name, "panels": [panel]})]
        units = {house.grafana_unit(_metric(field)) for query in queries for field in query.fields}
        if panel["type"] == "table":
            by_column = {
                override["matcher"]["options"]: override["properties"][0]["value"]
                for override in panel["fieldConfig"]["overrides"]
                if override["properties"][0]["id"] == "unit"
            }
            for query in queries:
                (field,) = query.fields
                (column,) = query.references.columns
                assert by_column[column] == house.grafana_unit(_metric(field)), (panel["title"], column)
        else:
            assert units == {panel["fieldConfig"]["defaults"]["unit"]}, panel["title"]


@pytest.mark.parametrize("query", QUERIES, ids=str)
def test_queries_use_only_catalog_names(query: PanelQuery) -> None:
    refs = query.references
    (measurement,) = refs.measurements
    level = Level(measurement)
    for field in refs.fields:
        assert level in _metric(field).levels, f"{field} is not on {measurement}"
    allowed = {tag.value for tag in catalog.tags_for(level)}
    assert refs.tags <= allowed, f"tags {sorted(refs.tags - allowed)} are not on {measurement}"
    # CPU is stored in millicores and shown in cores.
    if any(_metric(field).unit == "millicores" for field in refs.fields):
        assert f"/ {house.MILLICORES_PER_CORE}" in query.query


@pytest.mark.parametrize("query", QUERIES, ids=str)
def test_queries_filter_by_time_and_only_by_defined_variables(query: PanelQuery) -> None:
    dashboard = next(d for d in DASHBOARDS.values() if d["uid"] == query.dashboard)
    used = {match.group(1) for match in re.finditer(r"\$(\w+)", query.query)}
    assert "timeFilter" in used
    assert used <= BUILTINS | set(_variables(dashboard))
    refs = query.references.inner or query.references
    for tag in refs.filtered:
        assert f'"{tag}" =~ /^${tag}$/' in query.query, f"{tag} is filtered by its own variable"
    if query.result_format == "time_series":
        assert query.references.by_time
        assert "fill(null)" in query.query


@pytest.mark.parametrize("query", QUERIES, ids=str)
def test_entities_are_never_averaged_together(query: PanelQuery) -> None:
    """Each result series reads exactly one entity: every identity tag of the level is grouped by, or
    filtered by a variable that holds one value. Totals come from rollup measurements instead."""
    dashboard = next(d for d in DASHBOARDS.values() if d["uid"] == query.dashboard)
    variables = _variables(dashboard)
    refs: References = query.references.inner or query.references
    (measurement,) = refs.measurements
    for tag in IDENTITY[Level(measurement)]:
        if tag.value in refs.group_by:
            continue
        variable = variables.get(tag.value)
        assert tag.value in refs.filtered, f"{tag.value} is neither grouped by nor selected"
        assert variable is not None
        several = f"${tag.value} may hold several values but the query does not group by it"
        assert not variable["multi"], several
        assert not variable["includeAll"], several


@pytest.mark.parametrize("name", DASHBOARD_NAMES)
def test_variables_are_chained_show_tag_values_on_catalog_tags(name: str) -> None:
    defined: set[str] = set()
    for variable in iter_variable_queries(DASHBOARDS[name]):
        refs = variable.references
        (measurement,) = refs.measurements
        level = Level(measurement)
        allowed = {tag.value for tag in catalog.tags_for(level)}
        assert variable.query.startswith("SHOW TAG VALUES FROM ")
        assert refs.tag_key == variable.name
        assert refs.tag_key in allowed
        assert refs.filtered <= allowed
        assert refs.filtered <= defined, f"${variable.name} uses variables defined after it"
        if variable.include_all:
            assert variable.all_value == house.ALL_VALUE
        defined.add(variable.name)


def test_variables_chain_cluster_node_namespace_pod() -> None:
    pod = {
        variable.name: variable.references.filtered for variable in iter_variable_queries(DASHBOARDS["pod"])
    }
    assert list(pod) == ["cluster", "node", "namespace", "pod"]
    assert pod["node"] == {"cluster"}
    assert pod["namespace"] == {"cluster", "node"}
    assert pod["pod"] == {"cluster", "node", "namespace"}


def _links(dashboard: Mapping[str, Any]) -> list[str]:
    urls: list[str] = []
    for panel in _content_panels(dashboard):
        for override in panel["fieldConfig"]["overrides"]:
            for item in override["properties"]:
                if item["id"] == "links":
                    urls += [link["url"] for link in item["value"]]
    return urls


def test_links_lead_cluster_to_node_to_pod() -> None:
    targets = {
        name: {re.match(r"/d/([\w-]+)", url).group(1) for url in _links(dashboard)}  # type: ignore[union-attr]
        for name, dashboard in DASHBOARDS.items()
    }
    assert {"kpulse-node", "kpulse-namespace", "kpulse-pod"} <= targets["cluster"]
    assert "kpulse-pod" in targets["node"]
    assert "kpulse-pod" in targets["namespace"]
    assert "kpulse-node" in targets["pod"]


@pytest.mark.parametrize("name", DASHBOARD_NAMES)
def test_links_set_only_variables_their_target_has(name: str) -> None:
    by_uid = {dashboard["uid"]: dashboard for dashboard in DASHBOARDS.values()}
    for url in _links(DASHBOARDS[name]):
        uid = re.match(r"/d/([\w-]+)\?", url).group(1)  # type: ignore[union-attr]
        assert uid in by_uid, url
        names = set(re.findall(r"var-(\w+)=", url)) | set(re.findall(r"\$\{(\w+):queryparam\}", url))
        assert names <= set(_variables(by_uid[uid])), url
        assert names <= set(_variables(DASHBOARDS[name])) | {tag.value for tag in Tag}
        assert url.endswith("${__url_time_range}")


@pytest.mark.parametrize("name", DASHBOARD_NAMES)
def test_link_titles_name_the_clicked_entity_as_their_urls_read_it(name: str) -> None:
    """A series link reads series labels and a table link the clicked row; a title in the other form would
    show Grafana's placeholder text instead of the entity."""
    for panel in _content_panels(DASHBOARDS[name]):
        source = "__data.fields" if panel["type"] == "table" else "__field.labels"
        for override in panel["fieldConfig"]["overrides"]:
            for item in override["properties"]:
                for link in item["value"] if item["id"] == "links" else []:
                    clicked = re.findall(r"\$\{(__[\w.]+)\.(\w+)\}", link["title"] + link["url"])
                    assert clicked, link
                    assert {prefix for prefix, _ in clicked} == {source}, (panel["title"], link)
                    (entity,) = re.findall(r"\$\{[\w.]+\.(\w+)\}", link["title"])
                    assert f"var-{entity}=${{{source}.{entity}}}" in link["url"], (panel["title"], link)


@pytest.mark.parametrize("query", QUERIES, ids=str)
def test_kubelet_only_panels_say_so(query: PanelQuery) -> None:
    if not query.kubelet_only:
        return
    dashboard = next(d for d in DASHBOARDS.values() if d["uid"] == query.dashboard)
    panel = next(panel for panel in iter_panels(dashboard) if panel["id"] == query.panel_id)
    assert "stay empty on plain Docker hosts" in panel["description"]


@pytest.mark.parametrize("name", DASHBOARD_NAMES)
def test_descriptions_come_from_the_catalog(name: str) -> None:
    for panel in _content_panels(DASHBOARDS[name]):
        for query in iter_queries({"uid": name, "panels": [panel]}):
            for field in query.fields:
                assert _metric(field).description in panel["description"], (panel["title"], field)


def test_the_issue_dashboard_set_is_complete() -> None:
    titles = {name: {panel["title"] for panel in _content_panels(d)} for name, d in DASHBOARDS.items()}
    assert {"CPU by node", "CPU by namespace", "Top pods by CPU", "Top pods by memory"} <= titles["cluster"]
    assert {"Container restarts by namespace", "Network by node"} <= titles["cluster"]
    assert {"CPU by pod", "Node filesystem: used vs capacity", "Node network"} <= titles["node"]
    assert {"CPU: used vs requests and limits", "Container restarts by pod"} <= titles["namespace"]
    assert {"CPU by container, with the pod's requests and limits", "Pod network"} <= titles["pod"]
    assert {"Disk I/O by container", "Network by container"} <= titles["container"]

"""The house helpers build InfluxQL, panels, variables and layouts only from what the catalog allows."""

from __future__ import annotations

import pytest
from grafanalib import core as g

from aggregator import catalog
from aggregator.catalog import Level, Tag
from dashboards import house
from dashboards.errors import DefinitionError
from dashboards.house import (
    Aggregate,
    Layout,
    Line,
    Link,
    Scoped,
    Select,
    TopN,
    Uid,
    Variable,
    check_chain,
    line,
    mirrored,
    series,
    table,
    timeseries,
)


def test_select_renders_raw_influxql_with_grafana_variables() -> None:
    query = Select(
        catalog.CPU_USAGE_MILLICORES,
        Level.POD,
        "CPU",
        where=(Tag.CLUSTER, Tag.NODE),
        by=(Tag.NAMESPACE, Tag.POD),
    )
    assert query.influxql() == (
        'SELECT mean("cpu_usage_millicores") / 1000 AS "CPU" FROM "pod" WHERE $timeFilter'
        ' AND "cluster" =~ /^$cluster$/ AND "node" =~ /^$node$/'
        ' GROUP BY time($__interval), "namespace", "pod" fill(null)'
    )
    assert query.unit == house.CPU_UNIT


def test_select_over_the_whole_range_has_no_time_buckets() -> None:
    query = Select(
        catalog.MEMORY_CAPACITY_BYTES,
        Level.NODE,
        "capacity",
        where=(Tag.CLUSTER,),
        by=(Tag.NODE,),
        aggregate=Aggregate.LAST,
        over_time=False,
    )
    assert query.influxql() == (
        'SELECT last("memory_capacity_bytes") AS "capacity" FROM "node" WHERE $timeFilter'
        ' AND "cluster" =~ /^$cluster$/ GROUP BY "node"'
    )
    assert query.unit == "bytes"


def test_select_refuses_a_field_the_level_does_not_carry() -> None:
    with pytest.raises(DefinitionError, match="cpu_capacity_millicores from pod"):
        Select(catalog.CPU_CAPACITY_MILLICORES, Level.POD, "capacity")


def test_select_refuses_a_tag_the_level_does_not_carry() -> None:
    with pytest.raises(DefinitionError, match="the namespace measurement has no tag 'node'"):
        Select(catalog.CPU_USAGE_MILLICORES, Level.NAMESPACE, "CPU", where=(Tag.NODE,))
    with pytest.raises(DefinitionError, match="the cluster measurement has no tag 'node'"):
        Select(catalog.CPU_USAGE_MILLICORES, Level.CLUSTER, "CPU", by=(Tag.NODE,))


@pytest.mark.parametrize("label", ["cpu_usage_millicores", "pod", "", 'a"b'])
def test_select_refuses_a_label_that_reads_like_a_name(label: str) -> None:
    with pytest.raises(DefinitionError, match="label"):
        Select(catalog.CPU_USAGE_MILLICORES, Level.POD, label)


def test_top_n_reads_its_tags_from_the_subquery() -> None:
    inner = Select(
        catalog.MEMORY_WORKING_SET_BYTES,
        Level.POD,
        "memory",
        where=(Tag.CLUSTER,),
        by=(Tag.NAMESPACE, Tag.POD),
        over_time=False,
    )
    assert TopN(inner, 5).influxql() == (
        'SELECT top("memory", 5) AS "memory", "namespace", "pod" FROM (SELECT'
        ' mean("memory_working_set_bytes") AS "memory" FROM "pod" WHERE $timeFilter'
        ' AND "cluster" =~ /^$cluster$/ GROUP BY "namespace", "pod")'
    )
    with pytest.raises(DefinitionError, match="over_time=False"):
        TopN(Select(catalog.MEMORY_WORKING_SET_BYTES, Level.POD, "memory", by=(Tag.POD,)))


@pytest.mark.parametrize("metric", catalog.METRICS, ids=lambda metric: metric.name)
def test_every_catalog_unit_has_a_grafana_unit(metric: catalog.Metric) -> None:
    assert house.grafana_unit(metric)


def test_an_unknown_catalog_unit_breaks_the_build() -> None:
    odd = catalog.Metric("odd_furlongs", catalog.Kind.GAUGE, "furlongs", frozenset(Level), "Odd.")
    with pytest.raises(DefinitionError, match="furlongs"):
        house.grafana_unit(odd)


def test_kubelet_only_fields_are_catalog_fields() -> None:
    assert set(house.KUBELET_ONLY) <= set(catalog.METRICS)
    assert {
        "cpu_request_millicores",
        "memory_request_bytes",
        "cpu_allocatable_millicores",
        "memory_allocatable_bytes",
    } <= house.KUBELET_ONLY_FIELDS


def test_variable_query_is_show_tag_values_chained_by_regex() -> None:
    variable = Variable(Tag.POD, Level.POD, where=(Tag.CLUSTER, Tag.NAMESPACE))
    assert variable.query() == (
        'SHOW TAG VALUES FROM "pod" WITH KEY = "pod" WHERE "cluster" =~ /^$cluster$/'
        ' AND "namespace" =~ /^$namespace$/'
    )
    template = variable.template().to_json_data()
    assert template["name"] == "pod"
    assert template["datasource"] == house.datasource_ref()


def test_variable_refuses_a_tag_its_measurement_lacks() -> None:
    with pytest.raises(DefinitionError, match="no tag 'pod'"):
        Variable(Tag.POD, Level.NAMESPACE)


def test_variables_must_be_defined_before_they_filter() -> None:
    check_chain([Variable(Tag.CLUSTER, Level.CLUSTER), Variable(Tag.NODE, Level.NODE, where=(Tag.CLUSTER,))])
    with pytest.raises(DefinitionError, match=r"\$node filters by \['cluster'\]"):
        check_chain(
            [Variable(Tag.NODE, Level.NODE, where=(Tag.CLUSTER,)), Variable(Tag.CLUSTER, Level.CLUSTER)]
        )


def test_a_panel_has_one_unit() -> None:
    cpu = Select(catalog.CPU_USAGE_MILLICORES, Level.CLUSTER, "used")
    memory = Select(catalog.MEMORY_USAGE_BYTES, Level.CLUSTER, "memory")
    with pytest.raises(DefinitionError, match="mixes units"):
        timeseries("mixed", "Mixed.", [series(cpu), series(memory)])


def test_reference_lines_are_dashed_unstacked_and_coloured() -> None:
    used = Select(catalog.CPU_USAGE_MILLICORES, Level.CLUSTER, "used")
    limit = Select(catalog.CPU_LIMIT_MILLICORES, Level.CLUSTER, "limits")
    panel = timeseries("CPU", "CPU.", [series(used), line(limit, Line.LIMIT)], stack=True).to_json_data()
    (override,) = panel["fieldConfig"]["overrides"]
    assert override["matcher"] == {"id": "byFrameRefID", "options": "B"}
    properties = {item["id"]: item["value"] for item in override["properties"]}
    assert properties["custom.stacking"]["mode"] == "none"
    assert properties["custom.fillOpacity"] == 0
    assert properties["color"] == {"fixedColor": "purple", "mode": "fixed"}
    assert panel["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"


def test_table_columns_share_their_row_key() -> None:
    cpu = Select(catalog.CPU_USAGE_MILLICORES, Level.POD, "CPU", by=(Tag.POD,), over_time=False)
    memory = Select(catalog.MEMORY_USAGE_BYTES, Level.POD, "memory", by=(Tag.NAMESPACE,), over_time=False)
    with pytest.raises(DefinitionError, match="same tags"):
        table("t", "T.", [cpu, memory])
    over_time = Select(catalog.CPU_USAGE_MILLICORES, Level.POD, "CPU", by=(Tag.POD,))
    with pytest.raises(DefinitionError, match="over_time=False"):
        table("t", "T.", [over_time])


def test_links_carry_variables_and_take_clicked_tags() -> None:
    link = Link("Pod", Uid.POD, keep=(Tag.CLUSTER,), take=(Tag.NAMESPACE, Tag.POD))
    assert link.url(from_table=False) == (
        "/d/kpulse-pod?${cluster:queryparam}&var-namespace=${__field.labels.namespace}"
        "&var-pod=${__field.labels.pod}&${__url_time_range}"
    )
    assert "var-pod=${__data.fields.pod}" in link.url(from_table=True)


def test_a_link_is_titled_by_the_clicked_entity_from_where_it_was_clicked() -> None:
    link = Link("Pod", Uid.POD, keep=(Tag.CLUSTER,), take=(Tag.NAMESPACE, Tag.POD))
    assert link.json(from_table=False)["title"] == "Pod ${__field.labels.pod}"
    assert link.json(from_table=True)["title"] == "Pod ${__data.fields.pod}"
    assert Link("Cluster", Uid.CLUSTER, keep=(Tag.CLUSTER,)).title(from_table=True) == "Cluster"


def test_scoped_queries_filter_by_its_variables_and_group_by_its_entities() -> None:
    per_pod = Scoped(Level.POD, where=(Tag.CLUSTER, Tag.NODE), by=(Tag.NAMESPACE, Tag.POD))
    filtered = ' WHERE $timeFilter AND "cluster" =~ /^$cluster$/ AND "node" =~ /^$node$/'
    assert per_pod(catalog.MEMORY_WORKING_SET_BYTES, "memory").influxql() == (
        'SELECT mean("memory_working_set_bytes") AS "memory" FROM "pod"'
        + filtered
        + ' GROUP BY time($__interval), "namespace", "pod" fill(null)'
    )
    assert per_pod.last(catalog.CPU_LIMIT_MILLICORES, "limits").influxql() == (
        'SELECT last("cpu_limit_millicores") / 1000 AS "limits" FROM "pod"'
        + filtered
        + ' GROUP BY time($__interval), "namespace", "pod" fill(null)'
    )
    assert per_pod.column(catalog.RESTART_COUNT, "restarts", Aggregate.MAX).influxql() == (
        'SELECT max("restart_count") AS "restarts" FROM "pod"' + filtered + ' GROUP BY "namespace", "pod"'
    )


def test_scoped_without_by_reads_one_series() -> None:
    node = Scoped(Level.NODE, where=(Tag.CLUSTER, Tag.NODE))
    assert node(catalog.CPU_USAGE_MILLICORES, "used").influxql() == (
        'SELECT mean("cpu_usage_millicores") / 1000 AS "used" FROM "node" WHERE $timeFilter'
        ' AND "cluster" =~ /^$cluster$/ AND "node" =~ /^$node$/ GROUP BY time($__interval) fill(null)'
    )


def test_scoped_refuses_tags_its_level_lacks_where_it_is_named() -> None:
    with pytest.raises(DefinitionError, match="the namespace measurement has no tag 'node'"):
        Scoped(Level.NAMESPACE, where=(Tag.CLUSTER, Tag.NODE))
    with pytest.raises(DefinitionError, match="the node measurement has no tag 'pod'"):
        Scoped(Level.NODE, where=(Tag.CLUSTER,), by=(Tag.POD,))
    with pytest.raises(DefinitionError, match="cpu_capacity_millicores from pod"):
        Scoped(Level.POD, where=(Tag.CLUSTER,)).last(catalog.CPU_CAPACITY_MILLICORES, "capacity")


def test_mirrored_draws_the_second_query_below_the_axis() -> None:
    per_pod = Scoped(Level.POD, where=(Tag.CLUSTER,), by=(Tag.POD,))
    to_pod = Link("Pod", Uid.POD, keep=(Tag.CLUSTER,), take=(Tag.POD,))
    receive = per_pod(catalog.NETWORK_RX_BYTES_PER_SECOND, "receive")
    transmit = per_pod(catalog.NETWORK_TX_BYTES_PER_SECOND, "transmit")
    above, below = mirrored(receive, transmit, "$tag_pod", link=to_pod)
    assert (above.query, above.legend, above.negative, above.link) == (
        receive,
        "$tag_pod receive",
        False,
        to_pod,
    )
    assert (below.query, below.legend, below.negative, below.link) == (
        transmit,
        "$tag_pod transmit",
        True,
        to_pod,
    )
    totals = mirrored(
        Select(catalog.DISK_READ_BYTES_PER_SECOND, Level.POD, "read"),
        Select(catalog.DISK_WRITE_BYTES_PER_SECOND, Level.POD, "write"),
    )
    assert [(target.legend, target.negative) for target in totals] == [("read", False), ("write", True)]
    panel = timeseries("Network", "Network.", [above, below], stack=True).to_json_data()
    (_, negative) = panel["fieldConfig"]["overrides"]
    assert negative["matcher"] == {"id": "byFrameRefID", "options": "B"}
    assert {"id": "custom.transform", "value": "negative-Y"} in negative["properties"]


def test_layout_wraps_lines_under_full_width_rows() -> None:
    layout = Layout()
    layout.row("A")
    for _ in range(3):
        layout.add(g.Text(title="x"), width=10, height=3)
    layout.row("B")
    layout.add(g.Text(title="y"), width=24, height=2)
    positions = [(panel.id, panel.gridPos.x, panel.gridPos.y, panel.gridPos.w) for panel in layout.panels()]
    assert positions == [
        (1, 0, 0, 24),
        (2, 0, 1, 10),
        (3, 10, 1, 10),
        (4, 0, 4, 10),
        (5, 0, 7, 24),
        (6, 0, 8, 24),
    ]
    with pytest.raises(DefinitionError, match="does not fit"):
        layout.add(g.Text(title="z"), width=25)

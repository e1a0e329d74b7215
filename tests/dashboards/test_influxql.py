"""InfluxQL is read back into the names it uses, so tests can check them against the catalog."""

from __future__ import annotations

import pytest

from dashboards.errors import RenderError
from dashboards.influxql import references, tokenize


def test_a_select_names_its_measurement_field_and_tags() -> None:
    refs = references(
        'SELECT mean("cpu_usage_millicores") / 1000 AS "CPU" FROM "pod" WHERE $timeFilter'
        ' AND "cluster" =~ /^$cluster$/ AND "node" =~ /^$node$/'
        ' GROUP BY time($__interval), "namespace", "pod" fill(null)'
    )
    assert refs.measurements == {"pod"}
    assert refs.fields == {"cpu_usage_millicores"}
    assert refs.tags == {"cluster", "node", "namespace", "pod"}
    assert refs.filtered == {"cluster", "node"}
    assert refs.group_by == ("namespace", "pod")
    assert refs.by_time
    assert refs.columns == ("CPU",)


def test_a_subquery_keeps_its_names_apart() -> None:
    refs = references(
        'SELECT top("CPU", 10) AS "CPU", "namespace", "pod" FROM'
        ' (SELECT mean("cpu_usage_millicores") AS "CPU" FROM "pod" WHERE $timeFilter'
        ' AND "cluster" =~ /^$cluster$/ GROUP BY "namespace", "pod")'
    )
    assert refs.measurements == {"pod"}
    assert refs.fields == {"cpu_usage_millicores"}
    assert refs.group_by == ()
    assert refs.filtered == frozenset()
    assert refs.columns == ("CPU",)
    assert refs.inner is not None
    assert refs.inner.group_by == ("namespace", "pod")
    assert refs.inner.filtered == {"cluster"}


def test_an_outer_query_may_only_read_what_its_subquery_returns() -> None:
    with pytest.raises(RenderError, match="neither a column nor a tag"):
        references('SELECT max("other") FROM (SELECT mean("x") AS "y" FROM "pod" GROUP BY "pod")')


def test_show_tag_values_names_its_key_and_filters() -> None:
    refs = references(
        'SHOW TAG VALUES FROM "container" WITH KEY = "container" WHERE "cluster" =~ /^$cluster$/'
        ' AND "namespace" =~ /^$namespace$/'
    )
    assert refs.measurements == {"container"}
    assert refs.tag_key == "container"
    assert refs.filtered == {"cluster", "namespace"}
    assert refs.fields == frozenset()


def test_a_slash_divides_except_after_a_match_operator() -> None:
    kinds = [token.kind for token in tokenize('mean("a") / 1000 WHERE "t" =~ /^a\\/b$/')]
    assert kinds == ["word", "punct", "ident", "punct", "punct", "number", "word", "ident", "op", "regex"]


def test_quoted_names_are_unescaped() -> None:
    (token,) = tokenize('"a \\"b\\""')
    assert token.name == 'a "b"'


@pytest.mark.parametrize(
    "query",
    [
        'SELECT mean("x") FROM',
        'SELECT mean("x") FROM "pod" WHERE "t" =~ /open',
        'SELECT mean("x") FROM "pod" ORDER',
        'SELECT mean("x") FROM "pod" garbage',
        'SELECT mean("x") FROM "pod"; SELECT 1',
        'SHOW TAG VALUES FROM "pod" WITH KEY =~ /x/',
    ],
)
def test_malformed_queries_are_refused(query: str) -> None:
    with pytest.raises(RenderError):
        references(query)

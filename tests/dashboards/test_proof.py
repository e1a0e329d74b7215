"""Queries are listed from dashboard JSON and rendered the way Grafana's InfluxDB datasource renders them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboards.errors import RenderError
from dashboards.proof import (
    Verbatim,
    escape_regex,
    interval_text,
    iter_queries,
    iter_variable_queries,
    render_query,
    time_filter,
)

QUERY = (
    'SELECT mean("cpu_usage_millicores") / 1000 AS "CPU" FROM "pod" WHERE $timeFilter'
    ' AND "cluster" =~ /^$cluster$/ AND "pod" =~ /^$pod$/ GROUP BY time($__interval), "pod" fill(null)'
)
FROM = datetime(2026, 1, 2, 3, 4, 5, 678_000, tzinfo=UTC)
TO = FROM + timedelta(hours=1)


def render(query: str, **variables: str | list[str] | Verbatim) -> str:
    return render_query(query, variables, time_from=FROM, time_to=TO, interval=timedelta(seconds=10))


def test_absolute_time_range_becomes_epoch_milliseconds() -> None:
    # Grafana writes ``date.valueOf() + 'ms'`` for absolute bounds.
    assert time_filter(FROM, TO) == "time >= 1767323045678ms and time <= 1767326645678ms"


def test_relative_time_range_uses_now() -> None:
    assert time_filter("now-6h", "now") == "time >= now() - 6h and time <= now()"


@pytest.mark.parametrize("moment", ["yesterday", "now-1M", "now/d"])
def test_unsupported_relative_times_are_refused(moment: str) -> None:
    with pytest.raises(RenderError, match="time from"):
        time_filter(moment, "now")


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(RenderError, match="time zone"):
        time_filter(datetime(2026, 1, 1), TO)


@pytest.mark.parametrize(
    ("interval", "text", "milliseconds"),
    [
        (timedelta(seconds=10), "10s", 10_000),
        (timedelta(minutes=1), "1m", 60_000),
        (timedelta(hours=2), "2h", 7_200_000),
        (timedelta(milliseconds=500), "500ms", 500),
        (timedelta(days=1), "1d", 86_400_000),
        ("30s", "30s", 30_000),
        ("120s", "2m", 120_000),
    ],
)
def test_intervals_are_written_in_their_largest_whole_unit(
    interval: timedelta | str, text: str, milliseconds: int
) -> None:
    assert interval_text(interval) == (text, milliseconds)


@pytest.mark.parametrize("interval", [timedelta(seconds=90), timedelta(0), "10 s", "1.5m"])
def test_intervals_grafana_would_not_produce_are_refused(interval: timedelta | str) -> None:
    with pytest.raises(RenderError, match="interval"):
        interval_text(interval)


def test_builtins_and_variables_are_substituted() -> None:
    assert render(QUERY, cluster="prod", pod="web-1") == (
        'SELECT mean("cpu_usage_millicores") / 1000 AS "CPU" FROM "pod" WHERE time >= 1767323045678ms and'
        ' time <= 1767326645678ms AND "cluster" =~ /^prod$/ AND "pod" =~ /^web-1$/'
        ' GROUP BY time(10s), "pod" fill(null)'
    )


def test_values_in_a_regex_are_escaped_like_grafana_does() -> None:
    assert escape_regex("a.b/c(d)*") == "a\\.b\\/c\\(d\\)\\*"
    rendered = render(QUERY, cluster="prod.eu/1", pod="x")
    assert '"cluster" =~ /^prod\\.eu\\/1$/' in rendered


def test_several_values_become_an_alternation() -> None:
    rendered = render(QUERY, cluster="prod", pod=["web-1", "api.2"])
    assert '"pod" =~ /^(web-1|api\\.2)$/' in rendered
    assert '"pod" =~ /^web$/' in render(QUERY, cluster="prod", pod=["web"])


def test_a_custom_all_value_is_used_verbatim() -> None:
    assert '"pod" =~ /^.*$/' in render(QUERY, cluster="prod", pod=Verbatim(".*"))


def test_a_value_outside_a_regex_is_not_escaped() -> None:
    text = render('SELECT 1 FROM "pod" WHERE "pod" = \'$pod\' AND $timeFilter', pod="web.1")
    assert "\"pod\" = 'web.1'" in text


def test_every_variable_syntax_and_interval_form_is_substituted() -> None:
    text = render("${cluster} [[cluster]] $cluster $__interval $interval $__interval_ms", cluster="c")
    assert text == "c c c 10s 10s 10000"


def test_a_variable_without_a_value_is_an_error_not_left_in_the_text() -> None:
    with pytest.raises(RenderError, match=r"\$pod"):
        render(QUERY, cluster="prod")
    with pytest.raises(RenderError, match="no value selected"):
        render(QUERY, cluster="prod", pod=[])


DASHBOARD = {
    "uid": "d",
    "panels": [
        {"id": 1, "type": "row", "title": "open row", "panels": [], "targets": []},
        {
            "id": 2,
            "title": "graph",
            "targets": [
                {"refId": "A", "query": "SELECT 1", "rawQuery": True, "resultFormat": "time_series"},
                {"refId": "B", "query": "SELECT 2", "rawQuery": True, "hide": True},
            ],
        },
        {
            "id": 3,
            "type": "row",
            "title": "collapsed",
            "collapsed": True,
            "panels": [{"id": 4, "title": "inside", "targets": [{"refId": "A", "query": "SELECT 3"}]}],
        },
    ],
    "templating": {
        "list": [
            {
                "name": "cluster",
                "type": "query",
                "query": "SHOW TAG VALUES",
                "multi": False,
                "includeAll": False,
            },
            {"name": "step", "type": "interval", "query": "1m,5m"},
            {
                "name": "pod",
                "type": "query",
                "query": "Q",
                "multi": True,
                "includeAll": True,
                "allValue": ".*",
            },
        ]
    },
}


def test_iter_queries_walks_collapsed_rows_and_skips_hidden_targets() -> None:
    queries = iter_queries(DASHBOARD)
    assert [(query.panel_id, query.ref_id, query.query) for query in queries] == [
        (2, "A", "SELECT 1"),
        (4, "A", "SELECT 3"),
    ]
    assert queries[0].raw
    assert not queries[1].raw
    assert str(queries[0]) == "d / graph / A"


def test_iter_variable_queries_lists_query_variables_in_order() -> None:
    variables = iter_variable_queries(DASHBOARD)
    assert [(variable.name, variable.multi, variable.include_all) for variable in variables] == [
        ("cluster", False, False),
        ("pod", True, True),
    ]
    assert variables[1].all_value == ".*"

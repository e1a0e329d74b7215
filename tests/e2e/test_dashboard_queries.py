"""Proof that every dashboard query works on real data: no Grafana runs here, so the tests do its part.

The Docker-host scenario (``docker_host_e2e``: busybox containers under known load, the real collector and
aggregator, InfluxDB 1.x) fills a database. For every panel query and every variable query of every
dashboard, the variables are substituted the way Grafana's InfluxDB datasource does (``$timeFilter`` with
absolute and relative ranges, ``$__interval``, the tag variables, "All" and several values) and the text
runs against that InfluxDB. Each query must return at least one series with a value, the tags its
``GROUP BY`` promises, values matching the selection, and plausible numbers; the known loads must show
through the dashboards (the full burner at one core, the limited one at half a core, the holder's 128 MiB).

Queries that read fields only the kubelet reports (requests, allocatable, filesystem) cannot return data
on a Docker host: they are skipped, one test each, with the fields and the reason.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aggregator import catalog
from aggregator.catalog import Kind
from dashboards import house
from dashboards.generate import dashboards
from dashboards.proof import (
    PanelQuery,
    VariableQuery,
    VariableValue,
    Verbatim,
    iter_queries,
    iter_variable_queries,
    render_query,
)
from tests.e2e.conftest import DockerHostScenario
from tests.helpers import Series, wait_until

pytestmark = pytest.mark.integration

DASHBOARDS = {dashboard["uid"]: dashboard for dashboard in dashboards().values()}
QUERIES = [query for dashboard in DASHBOARDS.values() for query in iter_queries(dashboard)]
VARIABLES = [variable for dashboard in DASHBOARDS.values() for variable in iter_variable_queries(dashboard)]

INTERVAL = timedelta(seconds=10)
"""What Grafana uses at the provisioned minimum interval: several of the scenario's 2 s points per bucket."""
WINDOW = timedelta(minutes=15)
SETTLE_SECONDS = 90.0
CORE = 1.0
"""One core, as the dashboards show CPU (cores, not millicores)."""

View = dict[str, VariableValue]
"""One selection of a dashboard's variables."""


def _all(uid: str, name: str) -> Verbatim:
    """What Grafana substitutes when "All" is selected: the variable's custom all value, verbatim."""
    (variable,) = [v for v in DASHBOARDS[uid]["templating"]["list"] if v["name"] == name]
    assert variable["includeAll"], f"${name} of {uid} has no All option"
    return Verbatim(variable["allValue"])


@dataclass(frozen=True)
class Context:
    """The scenario, the selections each dashboard is proved with, and the node's capacity."""

    scenario: DockerHostScenario
    views: Mapping[str, Sequence[View]]
    capacity_cores: float
    memory_capacity_bytes: float

    def run(self, query: str) -> list[Series]:
        return self.scenario.influx.series(query)


def _views(scenario: DockerHostScenario) -> dict[str, list[View]]:
    """Selections a user would make. A panel is proved when it shows data in at least one of its dashboard's
    views: a limit line needs a limited pod, disk I/O a pod that does I/O."""
    cluster, node = scenario.cluster, scenario.node
    pod_uid, container_uid = house.Uid.POD.value, house.Uid.CONTAINER.value
    pods: list[View] = []
    for role in ("burner_full", "burner_limited", "blog_db", "pod_app"):
        identity = scenario.identity(role)
        pods.append(
            {
                "cluster": cluster,
                "node": _all(pod_uid, "node"),
                "namespace": identity.namespace,
                "pod": identity.pod,
            }
        )
    picked = [scenario.identity(role) for role in ("burner_full", "burner_limited", "blog_db")]
    return {
        house.Uid.CLUSTER.value: [{"cluster": cluster}],
        house.Uid.NODE.value: [{"cluster": cluster, "node": node}],
        house.Uid.NAMESPACE.value: [
            {"cluster": cluster, "namespace": namespace}
            for namespace in sorted({identity.namespace for identity in scenario.identities.values()})
        ],
        pod_uid: pods,
        container_uid: [
            # The default: All projects, All containers.
            {
                "cluster": cluster,
                "node": node,
                "namespace": _all(container_uid, "namespace"),
                "container": _all(container_uid, "container"),
            },
            # Several values picked by hand: Grafana sends (a|b|c).
            {
                "cluster": cluster,
                "node": node,
                "namespace": sorted({identity.namespace for identity in picked}),
                "container": [identity.container for identity in picked],
            },
        ],
    }


@pytest.fixture(scope="module")
def context(docker_host_e2e: DockerHostScenario) -> Context:
    scenario = docker_host_e2e
    rows = scenario.influx.rows(
        'SELECT last("cpu_capacity_millicores") AS cpu, last("memory_capacity_bytes") AS memory FROM "node"'
    )
    assert rows, "the node measurement has no capacity"
    return Context(
        scenario=scenario,
        views=_views(scenario),
        capacity_cores=rows[0]["cpu"] / house.MILLICORES_PER_CORE,
        memory_capacity_bytes=rows[0]["memory"],
    )


def _render(text: str, view: View, *, span: timedelta = WINDOW, relative: bool = False) -> str:
    if relative:
        minutes = int(span.total_seconds() // 60)
        return render_query(text, view, time_from=f"now-{minutes}m", time_to="now", interval=INTERVAL)
    now = datetime.now(UTC)
    return render_query(text, view, time_from=now - span, time_to=now, interval=INTERVAL)


def _values(series: Series, tag_columns: frozenset[str]) -> list[tuple[str, float]]:
    """``(column, value)`` of every non-null value of the series (time and tag columns left out)."""
    found = []
    for row in series.rows:
        for column, value in row.items():
            if column == "time" or column in tag_columns or value is None:
                continue
            assert isinstance(value, int | float), f"{column} = {value!r} is not a number"
            found.append((column, float(value)))
    return found


def _matches(value: str, selected: VariableValue) -> bool:
    if isinstance(selected, Verbatim):
        return True
    if isinstance(selected, str):
        return value == selected
    return value in selected


def _check_series(query: PanelQuery, view: View, found: list[Series], context: Context) -> int:
    """Check tags and plausibility of one view's result; the number of non-null values."""
    refs = query.references
    tag_columns = frozenset(refs.inner.group_by if refs.inner is not None else ())
    (field,) = refs.fields
    metric = catalog.BY_NAME[field]
    count = 0
    for series in found:
        assert set(series.tags) == set(refs.group_by), f"{query}: series tags {series.tags}"
        labels = dict(series.tags)
        for row in series.rows:
            # A top-N table returns its entity tags as columns of each row.
            assert tag_columns <= set(row), f"{query}: row {row} lacks {sorted(tag_columns)}"
            labels.update({tag: row[tag] for tag in tag_columns})
            for tag, label in labels.items():
                if tag in view:
                    assert _matches(label, view[tag]), f"{query}: {tag}={label!r} outside {view}"
        for column, value in _values(series, tag_columns):
            where = f"{query} ({labels}) {column}={value}"
            assert math.isfinite(value), where
            assert value >= 0, f"{where}: negative"
            if metric.unit == "millicores" and metric.kind is Kind.RATE:
                assert value <= context.capacity_cores * 1.1, (
                    f"{where}: above the node's {context.capacity_cores} cores"
                )
            if metric.unit == "ratio":
                assert value <= 1 + 1e-9, f"{where}: a ratio above 1"
            if field.startswith("memory_") and field != catalog.MEMORY_LIMIT_BYTES.name:
                assert value <= context.memory_capacity_bytes * 1.1, f"{where}: above the node's memory"
            count += 1
    return count


@pytest.mark.parametrize("query", QUERIES, ids=str)
def test_panel_query_returns_data(query: PanelQuery, context: Context) -> None:
    if query.kubelet_only:
        reasons = "; ".join(
            f"{metric.name}: {reason}"
            for metric, reason in house.KUBELET_ONLY.items()
            if metric.name in query.fields
        )
        pytest.skip(f"kubelet-only on a Docker host ({reasons})")
    assert query.raw
    with_data = []
    for view in context.views[query.dashboard]:
        text = _render(query.query, view)
        found = context.run(text)
        if _check_series(query, view, found, context):
            with_data.append(view)
            # The relative form Grafana sends for "Last 15 minutes" must run and find the same series.
            again = context.run(_render(query.query, view, relative=True))
            assert {tuple(sorted(s.tags.items())) for s in again} >= {
                tuple(sorted(s.tags.items())) for s in found if s.rows
            }, f"{query}: the relative time range finds other series"
    assert with_data, f"{query}: no data in any view {context.views[query.dashboard]}; query: {query.query}"


def _expected_values(variable: VariableQuery, view: View, scenario: DockerHostScenario) -> set[str]:
    if variable.name == "cluster":
        return {scenario.cluster}
    if variable.name == "node":
        return {scenario.node}
    filters = {tag: view[tag] for tag in variable.references.filtered if tag not in ("cluster", "node")}
    return {
        getattr(identity, variable.name)
        for identity in scenario.identities.values()
        if all(_matches(getattr(identity, tag), selected) for tag, selected in filters.items())
    }


@pytest.mark.parametrize("variable", VARIABLES, ids=str)
def test_variable_query_lists_the_real_values(variable: VariableQuery, context: Context) -> None:
    for view in context.views[variable.dashboard]:
        found = context.run(_render(variable.query, view))
        values = {row["value"] for series in found for row in series.rows}
        expected = _expected_values(variable, view, context.scenario)
        assert expected, f"{variable}: the scenario has nothing to expect for {view}"
        assert expected <= values, f"{variable} with {view}: missing {sorted(expected - values)} in {values}"


# --- the known loads, read through the dashboards -----------------------------------------------------------


def _panel_query(uid: house.Uid, title: str, ref_id: str = "A") -> PanelQuery:
    (query,) = [
        q for q in QUERIES if q.dashboard == uid.value and q.panel_title == title and q.ref_id == ref_id
    ]
    return query


def _series_values(found: list[Series], **tags: str) -> list[float]:
    values: list[float] = []
    for series in found:
        if all(series.tags.get(tag) == value for tag, value in tags.items()):
            values += [value for _, value in _values(series, frozenset())]
    return values


def _settled(
    what: str, read: Callable[[], list[float]], accept: Callable[[float], bool], expectation: str
) -> float:
    """Poll until the median of the recent bucket values read through a dashboard query is accepted."""
    seen: list[list[float]] = []

    def settled() -> bool:
        values = read()
        seen.append(values)
        return bool(values) and accept(statistics.median(values))

    wait_until(
        settled,
        SETTLE_SECONDS,
        lambda: f"{what}: expected {expectation}, last read {seen[-1:]}",
        every_seconds=2,
    )
    return statistics.median(seen[-1])


RECENT = timedelta(minutes=1)


def test_full_burner_shows_one_core_on_every_dashboard(context: Context) -> None:
    scenario = context.scenario
    full = scenario.identity("burner_full")
    pod_view = next(view for view in context.views[house.Uid.POD.value] if view["pod"] == full.pod)
    cases: list[tuple[PanelQuery, View, dict[str, str]]] = [
        (
            _panel_query(house.Uid.CONTAINER, "CPU by container, with limits"),
            context.views[house.Uid.CONTAINER.value][0],
            {"container": full.container},
        ),
        (_panel_query(house.Uid.POD, "CPU used"), pod_view, {}),
        (_panel_query(house.Uid.POD, "CPU by container, with the pod's requests and limits"), pod_view, {}),
        (
            _panel_query(house.Uid.NODE, "CPU by pod"),
            context.views[house.Uid.NODE.value][0],
            {"pod": full.pod},
        ),
        (
            _panel_query(house.Uid.NAMESPACE, "CPU by pod"),
            {"cluster": scenario.cluster, "namespace": full.namespace},
            {"pod": full.pod},
        ),
    ]
    for query, view, tags in cases:
        _settled(
            f"{query} for {tags or view}",
            lambda query=query, view=view, tags=tags: _series_values(  # type: ignore[misc]
                context.run(_render(query.query, view, span=RECENT)), **tags
            ),
            lambda cores: abs(cores - CORE) <= 0.05,
            "1.00 ± 0.05 cores",
        )


def test_top_pods_by_cpu_puts_the_full_burner_first(context: Context) -> None:
    full = context.scenario.identity("burner_full")
    query = _panel_query(house.Uid.CLUSTER, "Top pods by CPU")

    def first_row() -> dict[str, Any]:
        (series,) = context.run(_render(query.query, context.views[house.Uid.CLUSTER.value][0], span=RECENT))
        return max(series.rows, key=lambda row: row["CPU"])

    top = wait_until(
        lambda: (row := first_row())["pod"] == full.pod and abs(row["CPU"] - CORE) <= 0.05 and row,
        SETTLE_SECONDS,
        lambda: f"the top pod by CPU is {first_row()}, not {full.pod} at one core",
        every_seconds=2,
    )
    assert top["namespace"] == full.namespace


def test_limited_and_idle_burners_show_through_the_container_dashboard(context: Context) -> None:
    scenario = context.scenario
    view = context.views[house.Uid.CONTAINER.value][0]
    cpu = _panel_query(house.Uid.CONTAINER, "CPU by container, with limits")
    limit = _panel_query(house.Uid.CONTAINER, "CPU by container, with limits", "B")
    throttling = _panel_query(house.Uid.CONTAINER, "CPU throttling by container")
    limited = scenario.identity("burner_limited").container
    idle = scenario.identity("idle").container

    def read(query: PanelQuery, container: str) -> Callable[[], list[float]]:
        return lambda: _series_values(
            context.run(_render(query.query, view, span=RECENT)), container=container
        )

    _settled(
        "limited burner CPU", read(cpu, limited), lambda cores: abs(cores - 0.5) <= 0.025, "0.50 ± 0.025"
    )
    _settled("limited burner's limit line", read(limit, limited), lambda cores: cores == 0.5, "0.5 cores")
    _settled("limited burner throttling", read(throttling, limited), lambda ratio: 0.5 < ratio <= 1, "> 50 %")
    _settled("idle container CPU", read(cpu, idle), lambda cores: cores < 0.02, "under 0.02 cores")
    assert not _series_values(context.run(_render(limit.query, view)), container=idle), (
        "an unlimited limit line"
    )


def test_memory_holder_shows_its_128_mib(context: Context) -> None:
    holder = context.scenario.identity("memory_holder")
    held = 128 * 1024 * 1024
    for query, view, tags in (
        (
            _panel_query(house.Uid.CONTAINER, "Memory working set by container, with limits"),
            context.views[house.Uid.CONTAINER.value][0],
            {"container": holder.container},
        ),
        (
            _panel_query(house.Uid.NODE, "Memory by pod"),
            context.views[house.Uid.NODE.value][0],
            {"pod": holder.pod},
        ),
    ):
        _settled(
            f"{query} for {holder.container}",
            lambda query=query, view=view, tags=tags: _series_values(  # type: ignore[misc]
                context.run(_render(query.query, view, span=RECENT)), **tags
            ),
            lambda used: abs(used - held) <= 0.05 * held,
            "128 MiB ± 5 %",
        )


def test_cluster_totals_hold_both_burners(context: Context) -> None:
    cluster_view = context.views[house.Uid.CLUSTER.value][0]
    used = _panel_query(house.Uid.CLUSTER, "CPU used")
    capacity = _panel_query(house.Uid.CLUSTER, "CPU capacity")
    by_namespace = _panel_query(house.Uid.CLUSTER, "CPU by namespace")
    default = context.scenario.identity("burner_full").namespace

    def read(query: PanelQuery, **tags: str) -> Callable[[], list[float]]:
        return lambda: _series_values(context.run(_render(query.query, cluster_view, span=RECENT)), **tags)

    # The node's own usage is the whole machine's: at least the two burners, at most its cores.
    _settled(
        "cluster CPU", read(used), lambda cores: 1.45 <= cores <= context.capacity_cores * 1.05, ">= 1.45"
    )
    _settled(
        "cluster capacity", read(capacity), lambda cores: cores == context.capacity_cores, "the node's cores"
    )
    # The default namespace holds the full, the limited and the idle burner: 1.5 cores summed, not averaged.
    _settled(
        "default namespace CPU",
        read(by_namespace, namespace=default),
        lambda cores: abs(cores - 1.5) <= 0.075,
        "1.5",
    )

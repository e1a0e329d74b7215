"""House helpers of the kpulse dashboards: catalog-checked InfluxQL, standard panels, variables, layout.

Every measurement, field and tag name in a dashboard comes from :mod:`aggregator.catalog` through these
helpers, and each helper checks what it is given against the catalog (a field on a level that does not carry
it, a tag the level lacks, a catalog unit with no Grafana unit): a schema change then fails
``python -m dashboards build`` instead of leaving an empty panel in Grafana.

Conventions every dashboard follows:

- A dashboard variable is named after the tag it selects (``$cluster``, ``$node``, ...) and every query
  filters with ``"tag" =~ /^$tag$/``: the regex form works for one value, several values and "All".
- Totals across entities come from the rollup measurement of their level (the aggregator sums, never
  averages); a panel that shows several entities stacks one series per entity. ``mean()`` only ever runs
  over time within one series.
- CPU is stored in millicores and shown in cores: queries divide by :data:`MILLICORES_PER_CORE` and panels
  use the unit :data:`CPU_UNIT`.

Usage::

    cpu = Select(CPU_USAGE_MILLICORES, Level.POD, "CPU", where=(Tag.CLUSTER, Tag.NODE),
                 by=(Tag.NAMESPACE, Tag.POD))
    cpu.influxql()
    # SELECT mean("cpu_usage_millicores") / 1000 AS "CPU" FROM "pod" WHERE $timeFilter
    #   AND "cluster" =~ /^$cluster$/ AND "node" =~ /^$node$/
    #   GROUP BY time($__interval), "namespace", "pod" fill(null)
    layout = Layout()
    layout.row("CPU")
    layout.add(timeseries("CPU by pod", "What each pod uses.", [series(cpu, "$tag_pod")], stack=True))
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import attr
from grafanalib import core as g
from grafanalib._gen import DashboardEncoder
from grafanalib.influxdb import InfluxDBTarget

from aggregator import catalog
from aggregator.catalog import Level, Metric, Tag
from dashboards.errors import DefinitionError

GrafanaObject: TypeAlias = Any
"""A grafanalib object (grafanalib has no type hints)."""

DATASOURCE_UID = "kpulse-influxdb"
"""The InfluxDB datasource every panel and variable names; provisioning creates it under this uid."""
DATASOURCE_NAME = "kpulse InfluxDB"
DATASOURCE_TYPE = "influxdb"
DASHBOARD_TAG = "kpulse"
"""Every kpulse dashboard carries this tag; the dashboards' link menu lists dashboards by it."""
FOLDER_UID = "kpulse"
FOLDER_TITLE = "kpulse"


class Uid(enum.StrEnum):
    """Stable dashboard uids: links between dashboards and Grafana URLs (``/d/<uid>``) rely on them."""

    CLUSTER = "kpulse-cluster"
    NODE = "kpulse-node"
    NAMESPACE = "kpulse-namespace"
    POD = "kpulse-pod"
    CONTAINER = "kpulse-container"


SCHEMA_VERSION = 36
"""The dashboard schema the JSON is written in: datasource references by uid (Grafana 9.0 and later).
Grafana migrates the JSON forward from here when it loads it; it runs no migration older than this one."""

MILLICORES_PER_CORE = 1000
CPU_UNIT = "suffix:cores"
"""Grafana has no CPU unit. Panels show cores (``1.5 cores``) rather than millicores: fewer digits, the unit
kubectl and kube-prometheus' dashboards use, and no SI prefixes to misread (``si:mcores`` would print 0 as
``0 fcores``)."""

_GRAFANA_UNITS: Mapping[str, str] = {
    "millicores": CPU_UNIT,
    "bytes": "bytes",
    "bytes/s": "Bps",
    "packets/s": "pps",
    # An error is a packet received or sent in error, so errors per second read right as packets per second.
    "errors/s": "pps",
    "ratio": "percentunit",
    "seconds": "s",
    "restarts": "short",
    "processes": "short",
    "containers": "short",
    "pods": "short",
    "nodes": "short",
}
"""Catalog unit -> Grafana unit id."""

ALL_VALUE = ".*"
"""What Grafana substitutes for "All": one short regex instead of every value listed (``(a|b|...)``)."""

KUBELET_ONLY: Mapping[Metric, str] = {
    catalog.CPU_REQUEST_MILLICORES: "requests are set in Kubernetes pod specs and reported by the kubelet",
    catalog.MEMORY_REQUEST_BYTES: "requests are set in Kubernetes pod specs and reported by the kubelet",
    catalog.CPU_ALLOCATABLE_MILLICORES: "allocatable is part of the kubelet's node status",
    catalog.MEMORY_ALLOCATABLE_BYTES: "allocatable is part of the kubelet's node status",
    catalog.FS_USAGE_BYTES: "filesystem usage comes from the kubelet's summary API, not from Docker",
    catalog.FS_CAPACITY_BYTES: "filesystem capacity comes from the kubelet's summary API, not from Docker",
}
"""Fields only the kubelet source reports: on a plain Docker host the lines that need them stay empty."""

KUBELET_ONLY_FIELDS: frozenset[str] = frozenset(metric.name for metric in KUBELET_ONLY)


def grafana_unit(metric: Metric) -> str:
    """The Grafana unit id a panel uses for ``metric`` (CPU in cores, see :data:`CPU_UNIT`)."""
    try:
        return _GRAFANA_UNITS[metric.unit]
    except KeyError:
        raise DefinitionError(
            f"the catalog unit {metric.unit!r} of {metric.name} has no Grafana unit: add it to _GRAFANA_UNITS"
        ) from None


def datasource_ref() -> dict[str, str]:
    """The datasource reference panels, targets and variables carry (Grafana 9+ form)."""
    return {"type": DATASOURCE_TYPE, "uid": DATASOURCE_UID}


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes, so names never collide with keywords."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def tag_filter(tag: Tag) -> str:
    """``"tag" =~ /^$tag$/``: matches the dashboard variable named after ``tag`` (one, several or All)."""
    return f"{quote_ident(tag.value)} =~ /^${tag.value}$/"


def _check_tags(level: Level, tags: Iterable[Tag], what: str) -> None:
    allowed = catalog.tags_for(level)
    for tag in tags:
        if tag not in allowed:
            raise DefinitionError(f"{what}: the {level.value} measurement has no tag {tag.value!r}")


def _reserved_names() -> frozenset[str]:
    return frozenset(catalog.BY_NAME) | frozenset(tag.value for tag in Tag)


# --- queries ------------------------------------------------------------------------------------------------


class Aggregate(enum.StrEnum):
    """How points of one series are reduced over a time bucket (or the whole range for tables)."""

    MEAN = "mean"
    MAX = "max"
    LAST = "last"


@dataclass(frozen=True, slots=True)
class Select:
    """One field of one measurement, filtered by dashboard variables, as one InfluxQL statement.

    ``label`` names the result column (``AS "label"``); ``where`` tags are filtered by their variables;
    ``by`` tags split the result into one series (or table row) per entity. With ``over_time`` the points
    are bucketed by ``$__interval`` (a graph); without it, one value per entity over the range (a table).
    """

    metric: Metric
    level: Level
    label: str
    where: tuple[Tag, ...] = ()
    by: tuple[Tag, ...] = ()
    aggregate: Aggregate = Aggregate.MEAN
    over_time: bool = True

    def __post_init__(self) -> None:
        what = f"{self.metric.name} from {self.level.value}"
        if self.level not in self.metric.levels:
            raise DefinitionError(
                f"{what}: the catalog does not put this field on the {self.level.value} level"
            )
        _check_tags(self.level, self.where, what)
        _check_tags(self.level, self.by, what)
        if self.label in _reserved_names() or not self.label or '"' in self.label:
            # A label equal to a field or tag name would make the query's references ambiguous to read.
            raise DefinitionError(
                f"{what}: label {self.label!r} must be a plain name, not a field or tag name"
            )

    @property
    def metrics(self) -> tuple[Metric, ...]:
        """The catalog fields this query reads."""
        return (self.metric,)

    @property
    def unit(self) -> str:
        """The Grafana unit of the result."""
        return grafana_unit(self.metric)

    def expression(self) -> str:
        """The selected expression: the aggregate of the field, CPU converted to cores."""
        expression = f"{self.aggregate.value}({quote_ident(self.metric.name)})"
        if self.metric.unit == "millicores":
            expression += f" / {MILLICORES_PER_CORE}"
        return expression

    def influxql(self) -> str:
        """The raw InfluxQL, with Grafana's ``$timeFilter``, ``$__interval`` and tag variables left in."""
        conditions = ["$timeFilter", *(tag_filter(tag) for tag in self.where)]
        group = [quote_ident(tag.value) for tag in self.by]
        if self.over_time:
            group.insert(0, "time($__interval)")
        # Every name is a catalog name in double quotes; nothing user-supplied reaches this text.
        text = (
            f"SELECT {self.expression()} AS {quote_ident(self.label)} FROM {quote_ident(self.level.value)}"  # noqa: S608
            f" WHERE {' AND '.join(conditions)}"
        )
        if group:
            text += f" GROUP BY {', '.join(group)}"
        if self.over_time:
            # A missing bucket stays a gap: an absent rate (first interval, restart) must never read as zero.
            text += " fill(null)"
        return text


@dataclass(frozen=True, slots=True)
class TopN:
    """The ``n`` entities with the largest value of ``inner`` over the range, one table row each."""

    inner: Select
    n: int = 10

    def __post_init__(self) -> None:
        if self.inner.over_time or not self.inner.by:
            raise DefinitionError(
                "TopN needs an inner Select over the whole range (over_time=False) with `by`"
            )

    @property
    def metrics(self) -> tuple[Metric, ...]:
        return self.inner.metrics

    @property
    def unit(self) -> str:
        return self.inner.unit

    @property
    def label(self) -> str:
        return self.inner.label

    @property
    def by(self) -> tuple[Tag, ...]:
        return self.inner.by

    def influxql(self) -> str:
        label = quote_ident(self.inner.label)
        # The inner query's GROUP BY tags become the outer query's tags; selecting them names each row.
        tags = ", ".join(quote_ident(tag.value) for tag in self.inner.by)
        return f"SELECT top({label}, {self.n}) AS {label}, {tags} FROM ({self.inner.influxql()})"  # noqa: S608


Query: TypeAlias = Select | TopN


@dataclass(frozen=True, slots=True)
class Scoped:
    """Makes the queries a dashboard's selection scopes: fields of ``level`` filtered by the ``where``
    variables, one series (or table row) per ``by`` entity.

    Each dashboard names its few scopes once and calls them with a field and a label::

        per_pod = Scoped(Level.POD, where=(Tag.CLUSTER, Tag.NODE), by=(Tag.NAMESPACE, Tag.POD))
        per_pod(catalog.CPU_USAGE_MILLICORES, "CPU")  # a graph: bucketed by $__interval
        per_pod.last(catalog.CPU_LIMIT_MILLICORES, "limits")  # a reference line
        per_pod.column(catalog.RESTART_COUNT, "restarts", Aggregate.MAX)  # a table: the whole range
    """

    level: Level
    where: tuple[Tag, ...]
    by: tuple[Tag, ...] = ()

    def __post_init__(self) -> None:
        # Checked here too, so a wrong scope fails where it is named rather than at its first query.
        _check_tags(self.level, (*self.where, *self.by), f"scope {self.level.value}")

    def __call__(self, metric: Metric, label: str, aggregate: Aggregate = Aggregate.MEAN) -> Select:
        """``metric`` (in its catalog unit, CPU in cores) per ``$__interval`` bucket, for graphs and stats."""
        return Select(metric, self.level, label, where=self.where, by=self.by, aggregate=aggregate)

    def last(self, metric: Metric, label: str) -> Select:
        """The latest ``metric`` per bucket: gauges such as capacity, requests, limits and counts."""
        return self(metric, label, Aggregate.LAST)

    def column(self, metric: Metric, label: str, aggregate: Aggregate = Aggregate.MEAN) -> Select:
        """``metric`` reduced over the whole time range, one value per ``by`` entity: a table column."""
        return Select(
            metric, self.level, label, where=self.where, by=self.by, aggregate=aggregate, over_time=False
        )


# --- links --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Link:
    """A link to another kpulse dashboard: ``keep`` variables carry over, ``take`` come from the click.

    Its title is ``name`` followed by the clicked entity (the last ``take`` tag):
    ``Pod ${__field.labels.pod}`` on a series, ``Pod ${__data.fields.pod}`` on a table row.
    """

    name: str
    dashboard_uid: str
    keep: tuple[Tag, ...] = ()
    take: tuple[Tag, ...] = ()

    @staticmethod
    def _clicked(tag: Tag, *, from_table: bool) -> str:
        return f"${{__data.fields.{tag.value}}}" if from_table else f"${{__field.labels.{tag.value}}}"

    def title(self, *, from_table: bool) -> str:
        """The link's title: the target's name, then the clicked entity."""
        if not self.take:
            return self.name
        return f"{self.name} {self._clicked(self.take[-1], from_table=from_table)}"

    def url(self, *, from_table: bool) -> str:
        """The data link URL; ``from_table`` takes tags from the clicked row instead of series labels."""
        params = [f"${{{tag.value}:queryparam}}" for tag in self.keep]
        params += [f"var-{tag.value}={self._clicked(tag, from_table=from_table)}" for tag in self.take]
        params.append("${__url_time_range}")
        return f"/d/{self.dashboard_uid}?{'&'.join(params)}"

    def json(self, *, from_table: bool) -> dict[str, Any]:
        return {
            "title": self.title(from_table=from_table),
            "url": self.url(from_table=from_table),
            "targetBlank": False,
        }


# --- targets ------------------------------------------------------------------------------------------------


class Line(enum.Enum):
    """Reference lines drawn over usage: dashed, never stacked or filled, one fixed colour each."""

    CAPACITY = "red"
    ALLOCATABLE = "orange"
    REQUEST = "blue"
    LIMIT = "purple"

    @property
    def label(self) -> str:
        """The legend: ``capacity``, ``allocatable``, ``requests``, ``limits``."""
        return {"REQUEST": "requests", "LIMIT": "limits"}.get(self.name, self.name.lower())


@dataclass(frozen=True, slots=True)
class Target:
    """One query of a panel and how its series are drawn."""

    query: Query
    legend: str
    line: Line | None = None
    negative: bool = False
    """Drawn below the axis (transmit under receive, write under read)."""
    link: Link | None = None


def series(
    query: Query, legend: str | None = None, *, negative: bool = False, link: Link | None = None
) -> Target:
    """A target drawn as data: one series per entity when the query groups ``by`` tags.

    The default legend is the query's label, or the last ``by`` tag's value for per-entity series.
    """
    if legend is None:
        by = query.by
        legend = f"$tag_{by[-1].value}" if by else query.label
    return Target(query, legend, negative=negative, link=link)


def line(query: Query, kind: Line, legend: str | None = None) -> Target:
    """A target drawn as a reference line (capacity, allocatable, request, limit)."""
    return Target(query, legend or query.label, line=kind)


def reference_lines(make: Callable[[Metric, str], Query], lines: Mapping[Line, Metric]) -> list[Target]:
    """One reference line per ``lines`` entry, its query made by ``make(metric, label)``."""
    return [line(make(metric, kind.label), kind) for kind, metric in lines.items()]


def mirrored(above: Query, below: Query, entity: str = "", *, link: Link | None = None) -> list[Target]:
    """``above`` drawn over the axis and ``below`` under it: receive over transmit, read over write.

    Each series' legend is its query's label, after ``entity`` (``$tag_pod``) when one is given.
    """
    return [
        series(query, f"{entity} {query.label}" if entity else query.label, negative=negative, link=link)
        for query, negative in ((above, False), (below, True))
    ]


def _ref_ids(count: int) -> list[str]:
    if count > 26:
        raise DefinitionError("a panel has more than 26 queries; split it")
    return [chr(ord("A") + index) for index in range(count)]


def _influx_targets(targets: Sequence[Target], result_format: str) -> list[GrafanaObject]:
    return [
        InfluxDBTarget(
            alias=target.legend if result_format == "time_series" else "",
            format=result_format,
            datasource=datasource_ref(),
            query=target.query.influxql(),
            rawQuery=True,
            refId=ref_id,
        )
        for ref_id, target in zip(_ref_ids(len(targets)), targets, strict=True)
    ]


def _description(summary: str, targets: Sequence[Target]) -> str:
    """The panel description: what it answers, then each field it reads with the catalog's description."""
    lines = [summary.strip(), ""]
    seen: set[tuple[str, str]] = set()
    kubelet_only: set[str] = set()
    for target in targets:
        for metric in target.query.metrics:
            level = target.query.inner.level if isinstance(target.query, TopN) else target.query.level
            if (metric.name, level.value) in seen:
                continue
            seen.add((metric.name, level.value))
            lines.append(f"- `{metric.name}` ({level.value}): {metric.description}")
            if metric in KUBELET_ONLY:
                kubelet_only.add(metric.name)
    if any(metric.unit == "millicores" for target in targets for metric in target.query.metrics):
        lines += ["", f"CPU is shown in cores ({MILLICORES_PER_CORE} millicores = 1 core)."]
    if kubelet_only:
        names = ", ".join(f"`{name}`" for name in sorted(kubelet_only))
        lines += ["", f"Kubernetes only: {names} come from the kubelet and stay empty on plain Docker hosts."]
    return "\n".join(lines)


def _single_unit(title: str, targets: Sequence[Target]) -> str:
    units = {target.query.unit for target in targets}
    if len(units) != 1:
        raise DefinitionError(f"panel {title!r} mixes units {sorted(units)}: one panel, one unit")
    return units.pop()


def _base_thresholds() -> list[dict[str, Any]]:
    return [{"color": "green", "value": None}]


# --- panels -------------------------------------------------------------------------------------------------


def _line_override(ref_id: str, kind: Line) -> dict[str, Any]:
    return {
        "matcher": {"id": "byFrameRefID", "options": ref_id},
        "properties": [
            {"id": "color", "value": {"fixedColor": kind.value, "mode": "fixed"}},
            {"id": "custom.fillOpacity", "value": 0},
            {"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}},
            {"id": "custom.lineWidth", "value": 2},
            # Its own stacking group: a limit drawn on top of the stack would read as usage plus limit.
            {"id": "custom.stacking", "value": {"group": f"line-{ref_id}", "mode": "none"}},
        ],
    }


def timeseries(
    title: str,
    summary: str,
    targets: Sequence[Target],
    *,
    stack: bool = False,
    legend_table: bool = False,
) -> GrafanaObject:
    """A time series panel: one unit, reference lines dashed, per-entity series stacked when ``stack``.

    Stacking sums the entities visually, so a stack's top is their total; negative targets stack apart.
    """
    overrides: list[dict[str, Any]] = []
    for ref_id, target in zip(_ref_ids(len(targets)), targets, strict=True):
        if target.line is not None:
            overrides.append(_line_override(ref_id, target.line))
            continue
        properties: list[dict[str, Any]] = []
        if target.negative:
            properties.append({"id": "custom.transform", "value": "negative-Y"})
            if stack:
                properties.append({"id": "custom.stacking", "value": {"group": "negative", "mode": "normal"}})
        if target.link is not None:
            properties.append({"id": "links", "value": [target.link.json(from_table=False)]})
        if properties:
            overrides.append({"matcher": {"id": "byFrameRefID", "options": ref_id}, "properties": properties})
    return g.TimeSeries(
        title=title,
        description=_description(summary, targets),
        dataSource=datasource_ref(),
        targets=_influx_targets(targets, "time_series"),
        unit=_single_unit(title, targets),
        stacking={"group": "A", "mode": "normal"} if stack else {"group": "A", "mode": "none"},
        fillOpacity=25 if stack else 10,
        lineWidth=1,
        showPoints="never",
        legendDisplayMode="table" if legend_table else "list",
        legendPlacement="bottom",
        legendCalcs=["mean", "max", "lastNotNull"] if legend_table else [],
        tooltipMode="multi",
        tooltipSort="desc",
        overrides=overrides,
        thresholds=_base_thresholds(),
        maxDataPoints=None,
        axisSoftMin=0,
        extraJson={"options": {"legend": {"showLegend": True}}},
    )


def stat(title: str, summary: str, target: Target) -> GrafanaObject:
    """A single value (the latest) with its trend behind it."""
    return g.Stat(
        title=title,
        description=_description(summary, [target]),
        dataSource=datasource_ref(),
        targets=_influx_targets([target], "time_series"),
        format=target.query.unit,
        reduceCalc="lastNotNull",
        graphMode="area",
        colorMode="value",
        textMode="value",
        noValue="-",
        thresholds=_base_thresholds(),
        maxDataPoints=None,
    )


def table(
    title: str,
    summary: str,
    columns: Sequence[Query],
    *,
    sort_by: str | None = None,
    link: Link | None = None,
) -> GrafanaObject:
    """A table with one row per entity and one column per query, each column in its own unit.

    Every query must group ``by`` the same tags (the row key); several queries are merged on them.
    ``link`` goes on the column of the last row-key tag.
    """
    if not columns:
        raise DefinitionError(f"table {title!r} has no column")
    keys = columns[0].by
    if not keys or any(query.by != keys for query in columns):
        raise DefinitionError(f"table {title!r}: every column must group by the same tags")
    if any(isinstance(query, Select) and query.over_time for query in columns):
        raise DefinitionError(f"table {title!r}: table queries reduce the whole range (over_time=False)")
    targets = [series(query) for query in columns]
    overrides: list[dict[str, Any]] = [
        {
            "matcher": {"id": "byName", "options": query.label},
            "properties": [{"id": "unit", "value": query.unit}],
        }
        for query in columns
    ]
    if link is not None:
        overrides.append(
            {
                "matcher": {"id": "byName", "options": keys[-1].value},
                "properties": [{"id": "links", "value": [link.json(from_table=True)]}],
            }
        )
    order = [tag.value for tag in keys] + [query.label for query in columns]
    # Each query answers with its own frame (Time, tags, value). Time goes first: it is the range start for
    # mean() but the point's own time for last() and max(), so merge must join on the tags alone.
    transformations: list[dict[str, Any]] = [
        {
            "id": "organize",
            "options": {"excludeByName": {"Time": True}, "indexByName": {}, "renameByName": {}},
        }
    ]
    if len(columns) > 1:
        transformations.append({"id": "merge", "options": {}})
    transformations.append(
        {
            "id": "organize",
            "options": {
                "excludeByName": {},
                "indexByName": {name: index for index, name in enumerate(order)},
                "renameByName": {},
            },
        }
    )
    sort_label = sort_by or columns[0].label
    if sort_label not in order:
        raise DefinitionError(f"table {title!r}: sort_by {sort_label!r} is not one of its columns")
    return g.Table(
        title=title,
        description=_description(summary, targets),
        dataSource=datasource_ref(),
        targets=_influx_targets(targets, "table"),
        unit=columns[0].unit,
        overrides=overrides,
        transformations=transformations,
        sortBy=[g.TableSortByField(displayName=sort_label, desc=True)],
        thresholds=_base_thresholds(),
        maxDataPoints=None,
    )


# --- variables ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Variable:
    """A dashboard variable named after ``tag``, filled by ``SHOW TAG VALUES`` and chained by ``where``."""

    tag: Tag
    level: Level
    where: tuple[Tag, ...] = ()
    include_all: bool = False
    multi: bool = False
    label: str = ""

    def __post_init__(self) -> None:
        _check_tags(self.level, (self.tag, *self.where), f"variable ${self.tag.value}")

    @property
    def name(self) -> str:
        return self.tag.value

    def query(self) -> str:
        """``SHOW TAG VALUES FROM "<level>" WITH KEY = "<tag>" WHERE ...`` (no time filter: InfluxDB 1.x
        answers tag values from its index regardless of time)."""
        text = (
            f"SHOW TAG VALUES FROM {quote_ident(self.level.value)} WITH KEY = {quote_ident(self.tag.value)}"
        )
        if self.where:
            text += " WHERE " + " AND ".join(tag_filter(tag) for tag in self.where)
        return text

    def template(self) -> GrafanaObject:
        return g.Template(
            name=self.name,
            label=self.label or self.name.capitalize(),
            query=self.query(),
            dataSource=datasource_ref(),
            includeAll=self.include_all,
            multi=self.multi,
            allValue=ALL_VALUE if self.include_all else None,
            default="$__all" if self.include_all else None,
            refresh=g.REFRESH_ON_TIME_RANGE_CHANGE,
            sort=g.SORT_ALPHA_ASC,
        )


def check_chain(variables: Sequence[Variable]) -> None:
    """Every variable's ``where`` tags are variables defined before it (Grafana resolves them in order)."""
    defined: set[Tag] = set()
    for variable in variables:
        missing = [tag.value for tag in variable.where if tag not in defined]
        if missing:
            raise DefinitionError(f"variable ${variable.name} filters by {missing} before they are defined")
        defined.add(variable.tag)


# --- layout -------------------------------------------------------------------------------------------------


@dataclass
class Layout:
    """Places panels left to right in a 24-column grid, wrapping lines, under row headers; ids in order."""

    width: int = 24
    _panels: list[GrafanaObject] = field(default_factory=list)
    _x: int = 0
    _y: int = 0
    _line_height: int = 0

    def _new_line(self) -> None:
        self._y += self._line_height
        self._x = 0
        self._line_height = 0

    def _place(self, panel: GrafanaObject, width: int, height: int) -> None:
        if not 0 < width <= self.width or height <= 0:
            raise DefinitionError(f"panel {panel.title!r}: size {width}x{height} does not fit the grid")
        if self._x + width > self.width:
            self._new_line()
        placed = attr.evolve(
            panel, gridPos=g.GridPos(h=height, w=width, x=self._x, y=self._y), id=len(self._panels) + 1
        )
        self._panels.append(placed)
        self._x += width
        self._line_height = max(self._line_height, height)

    def row(self, title: str) -> None:
        """A row header across the full width; the next panels go below it."""
        self._new_line()
        self._place(g.RowPanel(title=title, collapsed=False), self.width, 1)
        self._new_line()

    def add(self, panel: GrafanaObject, *, width: int = 12, height: int = 8) -> None:
        """``panel`` next on the current line, or at the start of the next line when it does not fit."""
        self._place(panel, width, height)

    def panels(self) -> list[GrafanaObject]:
        return list(self._panels)


# --- dashboards ---------------------------------------------------------------------------------------------


def kpulse_dashboard(
    *, uid: str, title: str, description: str, variables: Sequence[Variable], layout: Layout
) -> GrafanaObject:
    """A kpulse dashboard: shared time settings, the kpulse link menu, the given variables and panels."""
    check_chain(variables)
    return g.Dashboard(
        uid=uid,
        title=title,
        description=description,
        tags=[DASHBOARD_TAG],
        timezone="browser",
        refresh="30s",
        time=g.Time("now-1h", "now"),
        graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        schemaVersion=SCHEMA_VERSION,
        editable=True,
        version=1,
        links=[
            g.DashboardLink(
                title="kpulse",
                type="dashboards",
                tags=[DASHBOARD_TAG],
                asDropdown=True,
                includeVars=True,
                keepTime=True,
            )
        ],
        templating=g.Templating(list=[variable.template() for variable in variables]),
        panels=layout.panels(),
    )


def dashboard_json(dashboard: GrafanaObject) -> dict[str, Any]:
    """The dashboard as plain JSON data, with the few fields grafanalib leaves in older shapes fixed."""
    data: dict[str, Any] = json.loads(json.dumps(dashboard.to_json_data(), cls=DashboardEncoder))
    for variable in data["templating"]["list"]:
        variable["definition"] = variable["query"]
        if variable["includeAll"]:
            # Grafana keeps a multi-value variable's selection as lists, a single-value one's as strings.
            all_text, all_value = ("All", "$__all") if not variable["multi"] else (["All"], ["$__all"])
            variable["current"] = {"selected": True, "text": all_text, "value": all_value}
        else:
            # Empty: Grafana picks the first value when the dashboard loads.
            variable["current"] = {}
    return data


def render(dashboard: GrafanaObject) -> str:
    """The dashboard JSON as written to disk: sorted keys, two-space indent, final newline (deterministic)."""
    return json.dumps(dashboard_json(dashboard), sort_keys=True, indent=2) + "\n"

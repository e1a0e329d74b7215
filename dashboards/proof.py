"""Helpers to prove dashboards against a real InfluxDB: list their queries, render them as Grafana would.

No Grafana runs in kpulse's test environment, so the proof does Grafana's part: it takes every panel and
variable query out of the generated JSON, substitutes ``$timeFilter``, ``$__interval``, ``$__interval_ms``
and the tag variables the way Grafana's InfluxDB datasource does, and the tests run the result.

Substitution follows Grafana's InfluxDB datasource (InfluxQL, raw queries):

- ``$timeFilter`` -> ``time >= <from> and time <= <to>``, each bound ``<epoch ms>ms`` for an absolute time,
  ``now()`` or ``now() - 1h`` for a relative one (``now``, ``now-1h``).
- ``$__interval`` -> the interval as Grafana writes it (``10s``, ``1m``); ``$__interval_ms`` -> milliseconds;
  ``$interval`` is the old name of ``$__interval``.
- A variable inside a regex literal (``=~ /^$node$/``) is regex-escaped (Grafana 10 and later escape there;
  older ones did for multi-value and All variables only, which is all the same for names without regex
  characters). Several values become ``(a|b)``; a custom "All" value (:class:`Verbatim`) is used as is.

Usage::

    for query in iter_queries(dashboard_json):
        text = render_query(query.query, {"cluster": "prod", "node": Verbatim(".*")},
                            time_from="now-1h", time_to="now", interval=timedelta(seconds=10))
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from dashboards.errors import RenderError
from dashboards.house import KUBELET_ONLY_FIELDS
from dashboards.influxql import References, references


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel."""

    dashboard: str
    """The dashboard's uid."""
    panel_id: int
    panel_title: str
    ref_id: str
    query: str
    result_format: str
    """``time_series`` or ``table``."""
    raw: bool
    """``rawQuery``: Grafana sends ``query`` as written (always true for kpulse dashboards)."""

    @cached_property
    def references(self) -> References:
        """The measurements, fields and tags the query uses."""
        return references(self.query)

    @property
    def fields(self) -> frozenset[str]:
        return self.references.fields

    @property
    def kubelet_only(self) -> frozenset[str]:
        """The fields this query needs that only the kubelet source reports (empty on Docker hosts)."""
        return self.fields & KUBELET_ONLY_FIELDS

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel_title} / {self.ref_id}"


@dataclass(frozen=True)
class VariableQuery:
    """One query variable of a dashboard."""

    dashboard: str
    name: str
    query: str
    multi: bool
    include_all: bool
    all_value: str | None

    @cached_property
    def references(self) -> References:
        return references(self.query)

    def __str__(self) -> str:
        return f"{self.dashboard} / ${self.name}"


@dataclass(frozen=True, slots=True)
class Verbatim:
    """A value substituted as it is, never escaped: what Grafana does with a variable's custom "All" value."""

    text: str


VariableValue = str | Sequence[str] | Verbatim
"""One selected value, several selected values, or a verbatim text (custom All value)."""


def _panels(panels: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    flat: list[Mapping[str, Any]] = []
    for panel in panels:
        flat.append(panel)
        # A collapsed row keeps its panels inside it.
        flat.extend(_panels(panel.get("panels") or []))
    return flat


def iter_panels(dashboard: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every panel of the dashboard JSON, rows and the panels of collapsed rows included."""
    return _panels(dashboard.get("panels") or [])


def iter_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    """Every visible target of every panel of the dashboard JSON, in panel order."""
    queries = []
    for panel in iter_panels(dashboard):
        for target in panel.get("targets") or []:
            if target.get("hide"):
                continue
            queries.append(
                PanelQuery(
                    dashboard=dashboard["uid"],
                    panel_id=panel["id"],
                    panel_title=panel.get("title", ""),
                    ref_id=target["refId"],
                    query=target["query"],
                    result_format=target.get("resultFormat", "time_series"),
                    raw=bool(target.get("rawQuery")),
                )
            )
    return queries


def iter_variable_queries(dashboard: Mapping[str, Any]) -> list[VariableQuery]:
    """Every query variable of the dashboard JSON, in the order Grafana resolves them."""
    return [
        VariableQuery(
            dashboard=dashboard["uid"],
            name=variable["name"],
            query=variable["query"],
            multi=bool(variable.get("multi")),
            include_all=bool(variable.get("includeAll")),
            all_value=variable.get("allValue"),
        )
        for variable in dashboard.get("templating", {}).get("list", [])
        if variable.get("type") == "query"
    ]


# --- rendering ----------------------------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$(\w+)|\[\[(\w+?)(?::\w+)?\]\]|\$\{(\w+)(?::[^}]+)?\}")
"""Grafana's three variable syntaxes: ``$name``, ``[[name]]``, ``${name}`` (formats ignored: none used)."""
_REGEX_LITERAL = re.compile(r"(?:=~|!~)\s*(/(?:[^/\\\n]|\\.)*/)")
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
_RELATIVE = re.compile(r"now-(\d+)([smhd])")
_UNITS_MS = (
    ("y", 365 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1000),
    ("ms", 1),
)
_INTERVAL_TEXT = re.compile(r"(\d+)(ms|s|m|h|d|y)")


def escape_regex(value: str) -> str:
    """``value`` with regex characters backslash-escaped, as Grafana's ``escapeRegex`` does (``/`` too)."""
    return _REGEX_SPECIAL.sub(lambda match: "\\" + match.group(), value)


def influx_time(moment: datetime | str, *, is_end: bool) -> str:
    """A time bound as Grafana writes it: ``<epoch ms>ms``, ``now()`` or ``now() - <n><unit>``."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise RenderError(f"{moment} has no time zone; Grafana sends absolute times in UTC")
        return f"{(moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)}ms"
    if moment == "now":
        return "now()"
    if match := _RELATIVE.fullmatch(moment):
        return f"now() - {match.group(1)}{match.group(2)}"
    bound = "to" if is_end else "from"
    raise RenderError(f"time {bound} {moment!r}: use a datetime, 'now' or 'now-<n><s|m|h|d>'")


def time_filter(time_from: datetime | str, time_to: datetime | str) -> str:
    """What Grafana substitutes for ``$timeFilter``."""
    return f"time >= {influx_time(time_from, is_end=False)} and time <= {influx_time(time_to, is_end=True)}"


def interval_text(interval: timedelta | str) -> tuple[str, int]:
    """``$__interval`` and ``$__interval_ms``: ``timedelta(seconds=10)`` -> ``("10s", 10000)``.

    Grafana writes an interval in its largest whole unit; it only ever computes rounded intervals, so an
    interval that is not one whole unit (90 s) is refused rather than written differently.
    """
    if isinstance(interval, str):
        match = _INTERVAL_TEXT.fullmatch(interval)
        if match is None:
            raise RenderError(f"interval {interval!r}: write it like 10s, 1m, 500ms")
        milliseconds = int(match.group(1)) * dict(_UNITS_MS)[match.group(2)]
    else:
        milliseconds = interval // timedelta(milliseconds=1)
    if milliseconds <= 0:
        raise RenderError(f"interval {interval!r} must be positive")
    for unit, size in _UNITS_MS:
        if milliseconds >= size:
            if milliseconds % size:
                raise RenderError(f"interval {interval!r} is not a whole number of {unit}")
            return f"{milliseconds // size}{unit}", milliseconds
    raise AssertionError("unreachable: 1 ms divides every positive interval")


def _format(name: str, value: VariableValue, *, in_regex: bool) -> str:
    if isinstance(value, Verbatim):
        return value.text
    if isinstance(value, str):
        return escape_regex(value) if in_regex else value
    values = [escape_regex(item) for item in value]
    if not values:
        raise RenderError(f"${name} has no value selected")
    return values[0] if len(values) == 1 else "(" + "|".join(values) + ")"


def render_query(
    query: str,
    variables: Mapping[str, VariableValue],
    *,
    time_from: datetime | str,
    time_to: datetime | str,
    interval: timedelta | str,
) -> str:
    """``query`` with every Grafana variable substituted as Grafana's InfluxDB datasource would.

    ``variables`` maps dashboard variable names (``cluster``, ``node``, ...) to the selection; a variable
    the query uses but ``variables`` lacks is an error, never left in the text.
    """
    interval_name, interval_ms = interval_text(interval)
    builtins = {
        "timeFilter": time_filter(time_from, time_to),
        "__interval": interval_name,
        "interval": interval_name,
        "__interval_ms": str(interval_ms),
    }
    regex_spans = [match.span(1) for match in _REGEX_LITERAL.finditer(query)]

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name in builtins:
            return builtins[name]
        if name not in variables:
            raise RenderError(f"the query uses ${name} but no value was given for it: {query}")
        in_regex = any(start <= match.start() < end for start, end in regex_spans)
        return _format(name, variables[name], in_regex=in_regex)

    return _VARIABLE.sub(substitute, query)

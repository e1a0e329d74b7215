"""Ranges older than the in-memory window, read from InfluxDB with InfluxQL ``GROUP BY time(step)``.

The reader is handed in: anything with ``query(influxql) -> series`` (the v1 sink backend's
``InfluxV1Backend.query`` is the real one). Values are aggregated exactly as the in-memory window aggregates
them, so the two halves of a range join without a step at the seam: per resolution bucket, the sum over the
entity's series (a container or pod name on two nodes is two series), then the mean of those sums per step.
Buckets are epoch-aligned on both sides (InfluxDB's default), and ``step`` is a multiple of the resolution.

Usage::

    history = History(backend, resolution_ns=10 * 10**9)
    history.read(Level.POD, ("prod", "shop", "web-1"), "cpu_usage_millicores", start_ns, stop_ns, step_ns)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from aggregator.catalog import TAGS_BY_LEVEL, Level, Tag
from aggregator.errors import SinkError
from aggregator.query.errors import HistoryUnavailableError
from aggregator.sinks.influx_v1 import quote_identifier

ENTITY_TAGS: Mapping[Level, tuple[str, ...]] = {
    level: tuple(tag.value for tag in tags if level is Level.NODE or tag is not Tag.NODE)
    for level, tags in TAGS_BY_LEVEL.items()
}
"""The tags that name an entity of each level: the identity tags, less ``node`` for containers and pods."""

_SUMMED_LEVELS = frozenset({Level.CONTAINER, Level.POD})
"""Levels whose entity can span series (one per node): summed per bucket before the mean."""


class ResultSeries(Protocol):
    """One series of an InfluxQL answer: rows of ``[time_ns, value]`` in ``columns`` order."""

    @property
    def columns(self) -> Sequence[str]: ...

    @property
    def values(self) -> Sequence[Sequence[Any]]: ...


class InfluxQuery(Protocol):
    """Runs one InfluxQL statement against the kpulse database, times in ns; raises ``SinkError``."""

    def query(self, influxql: str) -> Sequence[ResultSeries]: ...


def quote_string(value: str) -> str:
    """``value`` as a single-quoted InfluxQL string literal."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def influx_duration(ns: int) -> str:
    """``ns`` as an InfluxQL duration literal in the largest exact unit (``10s``, ``500ms``, ``7ns``)."""
    for unit, size in (("s", 1_000_000_000), ("ms", 1_000_000), ("u", 1_000)):
        if ns % size == 0:
            return f"{ns // size}{unit}"
    return f"{ns}ns"


def build_influxql(
    level: Level,
    entity: Sequence[str],
    field: str,
    *,
    start_ns: int,
    stop_ns: int,
    step_ns: int,
    resolution_ns: int,
    retention_policy: str | None = None,
) -> str:
    """The statement for ``field`` of ``entity`` over ``[start_ns, stop_ns)``, one row per ``step_ns``.

    Containers and pods are summed over their series per ``resolution_ns`` bucket in a subquery first;
    the other levels have one series per entity, so their mean is taken directly.
    """
    tags = ENTITY_TAGS[level]
    if len(entity) != len(tags):
        raise ValueError(
            f"a {level.value} is named by {len(tags)} tags ({', '.join(tags)}), not {len(entity)}"
        )
    source = quote_identifier(level.value)
    if retention_policy:
        source = f"{quote_identifier(retention_policy)}.{source}"
    where = " AND ".join(
        [f"{quote_identifier(tag)} = {quote_string(value)}" for tag, value in zip(tags, entity, strict=True)]
        + [f"time >= {start_ns}", f"time < {stop_ns}"]
    )
    column = quote_identifier(field)
    # S608: every identifier goes through quote_identifier and every value through quote_string.
    if level in _SUMMED_LEVELS:
        inner = (
            f"SELECT sum({column}) AS {column} FROM {source} WHERE {where} "  # noqa: S608
            f"GROUP BY time({influx_duration(resolution_ns)}) fill(none)"
        )
        source = f"({inner})"
        where = f"time >= {start_ns} AND time < {stop_ns}"
    group = f"GROUP BY time({influx_duration(step_ns)}) fill(none)"
    return f"SELECT mean({column}) FROM {source} WHERE {where} {group}"  # noqa: S608


class History:
    """Reads older ranges from InfluxDB through ``client`` (see the module docstring)."""

    def __init__(
        self, client: InfluxQuery, *, resolution_ns: int, retention_policy: str | None = None
    ) -> None:
        self._client = client
        self._resolution_ns = resolution_ns
        self._retention_policy = retention_policy

    def read(
        self, level: Level, entity: Sequence[str], field: str, *, start_ns: int, stop_ns: int, step_ns: int
    ) -> list[tuple[int, float]]:
        """``(step start ns, mean)`` of ``field`` over ``[start_ns, stop_ns)``, oldest first.

        Raises ``HistoryUnavailableError`` with InfluxDB's message when it cannot answer.
        """
        if stop_ns <= start_ns:
            return []
        statement = build_influxql(
            level,
            entity,
            field,
            start_ns=start_ns,
            stop_ns=stop_ns,
            step_ns=step_ns,
            resolution_ns=self._resolution_ns,
            retention_policy=self._retention_policy,
        )
        try:
            answer = self._client.query(statement)
        except SinkError as exc:
            raise HistoryUnavailableError(
                f"history before the in-memory window is unavailable: {exc}"
            ) from exc
        rows: list[tuple[int, float]] = []
        for series in answer:
            time_column = list(series.columns).index("time")
            value_column = 1 - time_column
            for row in series.values:
                value = row[value_column]
                if isinstance(value, int | float) and math.isfinite(value):
                    rows.append((int(row[time_column]), float(value)))
        rows.sort()
        return rows

    def close(self) -> None:
        """Close the client when it has connections to close (``InfluxV1Backend`` does)."""
        close = getattr(self._client, "close", None)
        if callable(close):
            close()

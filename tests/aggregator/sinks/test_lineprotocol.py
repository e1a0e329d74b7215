"""Line protocol from points: escaping, float formatting, ns time; and what InfluxDB reads back from it.

Two oracles besides the hand-written examples: influxdb-client's own ``Point`` (the escaping must be
byte-for-byte the same), and the real InfluxDB (what it reads back must be what was written).
"""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from influxdb_client.client.write.point import Point as LibraryPoint

from aggregator.points import Point
from aggregator.sinks.influx_v1 import InfluxV1Backend, quote_identifier
from aggregator.sinks.lineprotocol import rejected_points, to_line, to_lines


def test_a_point_becomes_one_line_with_sorted_tags_float_fields_and_ns_time() -> None:
    point = Point(
        "container",
        {"node": "n1", "cluster": "c"},
        {"memory_usage_bytes": 1024.0, "cpu_usage_millicores": 12.5},
        1_700_000_000_123_456_789,
    )

    assert to_line(point) == (
        "container,cluster=c,node=n1 cpu_usage_millicores=12.5,memory_usage_bytes=1024 1700000000123456789"
    )


def test_whole_numbers_and_ints_stay_floats_never_integer_fields() -> None:
    line = to_line(Point("m", {}, {"a": 3.0, "b": 7}, 1))  # an int sneaking in must not become "7i"

    assert line == "m a=3,b=7 1"
    assert "i" not in line.split(" ")[1]


def test_special_characters_in_measurement_tags_and_field_keys_are_escaped() -> None:
    point = Point("my measure,x", {"pod name": "a=b,c d"}, {"field key": 1.5}, 5)

    assert to_line(point) == r"my\ measure\,x,pod\ name=a\=b\,c\ d field\ key=1.5 5"


def test_bools_are_floats_and_numbers_keep_their_shortest_round_trip_text() -> None:
    fields = {"b": True, "tiny": 1e-7, "huge": 1e16, "neg_zero": -0.0, "sum": 0.1 + 0.2, "min": 5e-324}

    assert to_line(Point("m", {}, fields, 1)) == (
        "m b=1,huge=1e+16,min=5e-324,neg_zero=-0,sum=0.30000000000000004,tiny=1e-7 1"
    )


def test_empty_tag_values_are_left_out_as_influxdb_refuses_them() -> None:
    point = Point("m", {"a": "", "b": "x", "": "y"}, {"f": 1.5}, 1)

    assert to_line(point) == "m,b=x f=1.5 1"


def test_a_trailing_backslash_cannot_escape_the_separator_after_it() -> None:
    point = Point("m", {"a": "x\\", "b": "y"}, {"f": 1.5}, 1)

    assert to_line(point) == "m,a=x\\ ,b=y f=1.5 1"


def test_non_finite_fields_are_left_out_and_a_point_without_any_has_no_line() -> None:
    points = [
        Point("m", {}, {"ok": 1.0, "bad": math.nan}, 1),
        Point("m", {}, {"bad": math.inf}, 2),
        Point("m", {"t": "v"}, {"z": -math.inf, "a": 2.5}, 3),
        Point("m", {}, {}, 4),
    ]

    assert to_lines(points) == ["m ok=1 1", "m,t=v a=2.5 3"]


_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_NAME = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12).filter(lambda s: not s.startswith("#"))
# Both write the shortest round-trip digits; outside this range influxdb-client writes exponents as
# repr does ("1e-05") and kpulse as orjson does ("1e-5"): the same float, checked against InfluxDB below.
_POSITIONAL = st.floats(min_value=1e-4, max_value=1e15) | st.floats(min_value=-1e15, max_value=-1e-4)
_ANY_FIELD = _POSITIONAL | st.sampled_from([0.0, math.nan, math.inf, -math.inf])


def _library_line(point: Point) -> str:
    library = LibraryPoint(point.measurement)
    for key, value in point.tags.items():
        library.tag(key, value)
    for key, value in point.fields.items():
        library.field(key, value)
    library.time(point.time_ns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        line: str = library.to_line_protocol()
    return line


@settings(max_examples=300, deadline=None)
@given(
    measurement=_NAME,
    tags=st.dictionaries(_TEXT, _TEXT, max_size=6),
    fields=st.dictionaries(_NAME, _ANY_FIELD, max_size=6),
    time_ns=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_escaping_is_influxdb_clients_byte_for_byte(
    measurement: str, tags: dict[str, str], fields: dict[str, float], time_ns: int
) -> None:
    point = Point(measurement, tags, fields, time_ns)

    assert to_line(point) == _library_line(point)


@pytest.mark.parametrize(
    ("message", "sent", "rejected"),
    [
        ("field type conflict", 10, 10),
        (
            'partial write: field type conflict: input field "x" on measurement "m" is type integer, '
            "already exists as type float dropped=2",
            10,
            2,
        ),
        (
            "partial write: unable to parse 'm,a=b x=6 6 garbage': point is invalid\n"
            "unable to parse 'm x': invalid field format dropped=0",
            4,
            2,
        ),
        ("partial write: points beyond retention policy dropped=99", 3, 3),
    ],
)
def test_rejected_points_reads_influxdbs_own_counts(message: str, sent: int, rejected: int) -> None:
    assert rejected_points(message, sent) == rejected


@pytest.mark.integration
def test_influxdb_reads_back_exactly_what_the_lines_say(influx_reader: InfluxV1Backend) -> None:
    tricky = {"cluster": "c 1", "namespace": "a,b=c", "pod": 'quote"d', "container": "back\\slash"}
    fields = {"cpu_usage_millicores": 0.1 + 0.2, "memory_usage_bytes": 2.0**53, "tiny": 1.5e-300}
    point = Point("container", tricky, fields, 1_700_000_000_000_000_007)

    result = influx_reader.write_batch([point])
    assert result.rejected == 0, result.message

    (series,) = influx_reader.query('SELECT * FROM "container"')
    (row,) = series.rows()
    assert row == {"time": point.time_ns, **tricky, **fields}


# What InfluxDB 1.x can hold exactly (influxdb-client has the same limits): no control characters (a
# newline is written as the two characters "\\n"); no backslash at the end of a tag value (it would escape
# the separator after it); no backslash in names, where InfluxDB reads "\\"" as '"' and "\\ " as an escape.
# kpulse's names come from the catalog; only tag values come from the outside world.
_STORABLE = st.characters(codec="utf-8", blacklist_categories=("Cc", "Cs"))
_TAG_VALUE = st.text(_STORABLE, min_size=1, max_size=10).filter(lambda s: not s.endswith("\\"))
_KEY = st.text(
    st.characters(codec="utf-8", blacklist_categories=("Cc", "Cs"), blacklist_characters="\\"),
    min_size=1,
    max_size=8,
)
_FINITE = st.floats(allow_nan=False, allow_infinity=False).map(lambda x: x + 0.0)  # -0.0 reads back as 0
_series_numbers = itertools.count()


@pytest.mark.integration
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=_KEY,
    tags=st.dictionaries(_KEY, _TAG_VALUE, max_size=4),
    fields=st.dictionaries(_KEY, _FINITE, min_size=1, max_size=4),
)
def test_influxdb_reads_back_any_storable_point_exactly(
    influx_reader: InfluxV1Backend, name: str, tags: dict[str, str], fields: dict[str, float]
) -> None:
    # Prefixes keep tag and field keys apart (InfluxDB renames a clash) and every example in its own series.
    measurement = f"m{next(_series_numbers)} {name}"
    tags = {f"t{key}": value for key, value in tags.items()}
    fields = {f"f{key}": value for key, value in fields.items()}
    point = Point(measurement, tags, fields, 1_700_000_000_000_000_000 + next(_series_numbers))

    result = influx_reader.write_batch([point])

    assert result.rejected == 0, (result.message, to_line(point))
    (series,) = influx_reader.query(f"SELECT * FROM {quote_identifier(measurement)}")
    (row,) = series.rows()
    # InfluxDB's JSON prints a whole float below 1e21 as an integer ("49038453135013700"): read as float.
    stored = {key: float(value) if key in fields else value for key, value in row.items()}
    assert stored == {"time": point.time_ns, **tags, **fields}, to_line(point)

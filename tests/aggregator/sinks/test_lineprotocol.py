"""Line protocol from points: escaping, float formatting, ns time; and what InfluxDB reads back from it."""

from __future__ import annotations

import math

import pytest

from aggregator.points import Point
from aggregator.sinks.influx_v1 import InfluxV1Backend
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


def test_non_finite_fields_are_left_out_and_a_point_without_any_has_no_line() -> None:
    points = [
        Point("m", {}, {"ok": 1.0, "bad": math.nan}, 1),
        Point("m", {}, {"bad": math.inf}, 2),
    ]

    assert to_lines(points) == ["m ok=1 1"]


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

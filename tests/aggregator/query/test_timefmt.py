"""RFC 3339 parsing and the Go time and duration forms the two APIs print."""

from __future__ import annotations

import pytest

from aggregator.query.errors import BadTimeError
from aggregator.query.timefmt import go_duration, heapster_time, kubernetes_time, parse_rfc3339

T = 1_714_557_600 * 10**9
"""2024-05-01T10:00:00Z in ns."""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:00:00Z", T),
        ("2024-05-01t10:00:00z", T),
        ("2024-05-01T12:00:00+02:00", T),
        ("2024-05-01T09:30:00-00:30", T),
        ("2024-05-01T10:00:00.5Z", T + 500_000_000),
        ("2024-05-01T10:00:00.000000001Z", T + 1),
        ("1970-01-01T00:00:00Z", 0),
        ("1969-12-31T23:59:59.5Z", -500_000_000),
    ],
)
def test_rfc3339_times_parse_to_exact_nanoseconds(text: str, expected: int) -> None:
    assert parse_rfc3339(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "2024-05-01",
        "2024-05-01 10:00:00Z",
        "2024-05-01T10:00:00",
        "2024-05-01T10:00Z",
        "2024-13-01T10:00:00Z",
        "2024-02-30T10:00:00Z",
        "2024-05-01T24:00:00Z",
        "2024-05-01T10:00:60Z",
        "2024-05-01T10:00:00.1234567891Z",
        "1677-01-01T00:00:00Z",
        "2263-01-01T00:00:00Z",
        "now",
    ],
)
def test_anything_else_is_refused_with_a_message_naming_the_parameter(text: str) -> None:
    with pytest.raises(BadTimeError, match="start="):
        parse_rfc3339(text, name="start")


def test_times_print_as_go_prints_them() -> None:
    assert heapster_time(T) == "2024-05-01T10:00:00Z"
    assert heapster_time(T + 500_000_000) == "2024-05-01T10:00:00.5Z"
    assert heapster_time(T + 1) == "2024-05-01T10:00:00.000000001Z"
    assert kubernetes_time(T + 999_999_999) == "2024-05-01T10:00:00Z"
    assert parse_rfc3339(heapster_time(T + 123_456_789)) == T + 123_456_789


@pytest.mark.parametrize(
    ("ns", "expected"),
    [
        (0, "0s"),
        (1, "1ns"),
        (1_000, "1µs"),
        (1_500_000, "1.5ms"),
        (500_000_000, "500ms"),
        (2_000_000_000, "2s"),
        (2_500_000_000, "2.5s"),
        (10_000_000_000, "10s"),
        (60_000_000_000, "1m0s"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (90_061_500_000_000, "25h1m1.5s"),
        (-10_000_000_000, "-10s"),
    ],
)
def test_durations_print_as_go_time_duration(ns: int, expected: str) -> None:
    assert go_duration(ns) == expected

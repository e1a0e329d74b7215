"""The agent's schedule: scrapes land on multiples of the interval, the aggregator's buckets."""

from __future__ import annotations

import pytest

from collector.agent import next_aligned


@pytest.mark.parametrize(
    ("now", "interval", "expected"),
    [(1000.0, 10, 1010.0), (1003.2, 10, 1010.0), (1009.999, 10, 1010.0), (7.1, 2.5, 7.5), (60.0, 15, 75.0)],
)
def test_next_aligned_is_the_next_multiple_of_the_interval(
    now: float, interval: float, expected: float
) -> None:
    assert next_aligned(interval, now=now).timestamp() == pytest.approx(expected)

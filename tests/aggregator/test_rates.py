"""RateTracker gives a delta only between two comparable samples of one series, and never corrupts state."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aggregator.rates import Delta, RateTracker, Suppression, SuppressionCounts

S = 1_000_000_000
KEY = ("node-1", "c1")


def _tracker() -> RateTracker[tuple[str, str]]:
    return RateTracker(SuppressionCounts())


def test_first_sample_gives_nothing_and_is_counted() -> None:
    tracker = _tracker()
    assert tracker.update(KEY, 10 * S, "start-1", (100, 5), seen_ns=0) is None
    assert tracker.counts.first == 1
    assert len(tracker) == 1
    assert KEY in tracker


def test_second_sample_gives_increases_over_the_samples_own_elapsed_time() -> None:
    tracker = _tracker()
    tracker.update(KEY, 10 * S, "start-1", (100, 5), seen_ns=0)
    assert tracker.update(KEY, 15 * S, "start-1", (600, 5), seen_ns=0) == Delta(5 * S, (500, 0))


def test_a_restart_gives_nothing_and_the_restarted_sample_is_the_new_baseline() -> None:
    tracker = _tracker()
    tracker.update(KEY, 10 * S, "start-1", (10_000, 5), seen_ns=0)
    # The new incarnation's counter is higher than the old one's, so only the marker reveals the restart.
    assert tracker.update(KEY, 20 * S, "start-2", (20_000, 1), seen_ns=0) is None
    assert tracker.counts.restart == 1
    assert tracker.update(KEY, 30 * S, "start-2", (21_000, 3), seen_ns=0) == Delta(10 * S, (1_000, 2))


def test_a_counter_going_backwards_gives_nothing_and_rebases() -> None:
    tracker = _tracker()
    tracker.update(KEY, 10 * S, "start-1", (10_000, 5), seen_ns=0)
    assert tracker.update(KEY, 20 * S, "start-1", (10_500, 2), seen_ns=0) is None
    assert tracker.counts.reset == 1
    assert tracker.update(KEY, 30 * S, "start-1", (11_000, 4), seen_ns=0) == Delta(10 * S, (500, 2))


def test_an_older_sample_is_ignored_and_the_baseline_kept() -> None:
    tracker = _tracker()
    tracker.update(KEY, 20 * S, "start-1", (2_000,), seen_ns=0)
    assert tracker.update(KEY, 10 * S, "start-1", (1_000,), seen_ns=0) is None
    assert tracker.counts.out_of_order == 1
    assert tracker.update(KEY, 30 * S, "start-1", (3_000,), seen_ns=0) == Delta(10 * S, (1_000,))


def test_a_duplicate_timestamp_is_ignored_even_with_other_values() -> None:
    tracker = _tracker()
    tracker.update(KEY, 20 * S, "start-1", (2_000,), seen_ns=0)
    assert tracker.update(KEY, 20 * S, "start-1", (9_999,), seen_ns=0) is None
    # An out-of-order sample from another incarnation must not pass for a restart either.
    assert tracker.update(KEY, 19 * S, "start-0", (50,), seen_ns=0) is None
    assert tracker.counts.out_of_order == 2
    assert tracker.counts.restart == 0
    assert tracker.update(KEY, 30 * S, "start-1", (3_000,), seen_ns=0) == Delta(10 * S, (1_000,))


def test_a_counter_absent_in_either_sample_has_no_increase_but_the_others_do() -> None:
    tracker = _tracker()
    tracker.update(KEY, 10 * S, None, (100, None, 7), seen_ns=0)
    assert tracker.update(KEY, 20 * S, None, (200, 50, None), seen_ns=0) == Delta(10 * S, (100, None, None))
    assert tracker.update(KEY, 30 * S, None, (300, 80, 9), seen_ns=0) == Delta(10 * S, (100, 30, None))


def test_an_absent_counter_going_down_is_not_a_reset() -> None:
    tracker = _tracker()
    tracker.update(KEY, 10 * S, None, (100, 500), seen_ns=0)
    assert tracker.update(KEY, 20 * S, None, (200, None), seen_ns=0) == Delta(10 * S, (100, None))
    assert tracker.counts.reset == 0


def test_trailing_counters_left_out_are_absent() -> None:
    tracker = _tracker()
    tracker.update(KEY, 10 * S, None, (100, 1, 2), seen_ns=0)
    assert tracker.update(KEY, 20 * S, None, (200,), seen_ns=0) == Delta(10 * S, (100,))
    assert tracker.update(KEY, 30 * S, None, (300, 5, 6), seen_ns=0) == Delta(10 * S, (100,))
    assert tracker.update(KEY, 40 * S, None, (400, 6, 8), seen_ns=0) == Delta(10 * S, (100, 1, 2))


def test_series_are_independent() -> None:
    tracker = _tracker()
    tracker.update(("n", "a"), 10 * S, None, (100,), seen_ns=0)
    assert tracker.update(("n", "b"), 20 * S, None, (5,), seen_ns=0) is None
    assert tracker.update(("n", "a"), 20 * S, None, (200,), seen_ns=0) == Delta(10 * S, (100,))


def test_sweep_releases_series_not_seen_for_the_expiry() -> None:
    tracker = _tracker()
    tracker.update(("n", "old"), 10 * S, None, (1,), seen_ns=100 * S)
    tracker.update(("n", "new"), 10 * S, None, (1,), seen_ns=200 * S)
    assert tracker.sweep(now_ns=199 * S, expiry_ns=100 * S) == 0
    assert tracker.sweep(now_ns=200 * S, expiry_ns=100 * S) == 1
    assert ("n", "old") not in tracker
    assert len(tracker) == 1
    # Released state means the next sample is a first one again, not a rate over the gap.
    assert tracker.update(("n", "old"), 400 * S, None, (2,), seen_ns=400 * S) is None
    assert tracker.counts.first == 3


def test_an_ignored_sample_still_keeps_its_series_alive() -> None:
    tracker = _tracker()
    tracker.update(KEY, 10 * S, None, (1,), seen_ns=100 * S)
    tracker.update(KEY, 10 * S, None, (1,), seen_ns=190 * S)
    assert tracker.sweep(now_ns=250 * S, expiry_ns=100 * S) == 0
    assert len(tracker) == 1


def test_trackers_can_share_one_count() -> None:
    counts = SuppressionCounts()
    containers: RateTracker[str] = RateTracker(counts)
    nodes: RateTracker[str] = RateTracker(counts)
    containers.update("a", 1, None, (1,), seen_ns=0)
    nodes.update("a", 1, None, (1,), seen_ns=0)
    assert counts.first == 2
    assert nodes.counts is containers.counts


def test_counts_are_keyed_by_every_suppression_reason() -> None:
    counts = SuppressionCounts(absurd=3)
    assert counts.as_dict() == {
        reason.value: 3 if reason is Suppression.ABSURD else 0 for reason in Suppression
    }


def test_any_counter_going_backwards_gives_nothing_whether_or_not_one_is_absent() -> None:
    tracker = _tracker()
    tracker.update(KEY, 10 * S, None, (100, 5, 7), seen_ns=0)
    assert tracker.update(KEY, 20 * S, None, (200, 6, 6), seen_ns=0) is None
    assert tracker.update(KEY, 30 * S, None, (300, None, 9), seen_ns=0) == Delta(10 * S, (100, None, 3))
    assert tracker.update(KEY, 40 * S, None, (400, 1, 8), seen_ns=0) is None
    assert tracker.counts.reset == 2
    assert tracker.update(KEY, 50 * S, None, (500, 2, 9), seen_ns=0) == Delta(10 * S, (100, 1, 1))


_counter = st.one_of(st.none(), st.integers(0, 3), st.integers(0, 2**63 - 1))
_samples = st.lists(
    st.tuples(
        st.integers(0, 6),
        st.sampled_from(["start-1", "start-2"]),
        st.lists(_counter, min_size=1, max_size=4).map(tuple),
    ),
    max_size=12,
)


@given(_samples)
def test_deltas_follow_the_rules_sample_by_sample(
    samples: list[tuple[int, str, tuple[int | None, ...]]],
) -> None:
    """Against a plain model of the rules in the module docstring, one sample at a time."""
    tracker = _tracker()
    held: tuple[int, str, tuple[int | None, ...]] | None = None
    for seconds, marker, counters in samples:
        got = tracker.update(KEY, seconds * S, marker, counters, seen_ns=0)
        if held is None:
            expected, held = None, (seconds, marker, counters)
        elif seconds <= held[0]:
            expected = None
        elif marker != held[1]:
            expected, held = None, (seconds, marker, counters)
        else:
            pairs = list(zip(counters, held[2], strict=False))
            increases = tuple(None if new is None or old is None else new - old for new, old in pairs)
            went_back = any(increase is not None and increase < 0 for increase in increases)
            expected = None if went_back else Delta((seconds - held[0]) * S, increases)
            held = (seconds, marker, counters)
        assert got == expected

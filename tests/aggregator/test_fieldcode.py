"""The compiled field builders against the plain loops they stand for: same values, types, order, errors."""

from __future__ import annotations

from functools import reduce
from operator import add

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator import catalog
from aggregator.fieldcode import float_dict, float_setter, increases_of, rate_setter, summer

_NAMES = (
    catalog.MEMORY_USAGE_BYTES.name,
    catalog.CPU_LIMIT_MILLICORES.name,
    catalog.RESTART_COUNT.name,
    catalog.FS_USAGE_BYTES.name,
)
# Names a catalog would never hold: quotes, a backslash, a newline, braces. They must stay plain data.
_ODD = ("it's", 'say "hi"', "back\\slash", "new\nline", "{x}", "v0")

_values = st.one_of(st.none(), st.integers(0, 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False))
_finite = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False)


def _items(fields: dict[str, float]) -> list[tuple[str, type, float]]:
    """A dict as comparable as it gets: order, key, type and value of each entry."""
    return [(name, type(value), value) for name, value in fields.items()]


@pytest.mark.parametrize("names", [_NAMES, _ODD, _NAMES[:1]])
@given(data=st.data())
def test_float_setter_sets_what_the_loop_sets(names: tuple[str, ...], data: st.DataObject) -> None:
    values = data.draw(st.tuples(*[_values] * len(names)))
    before = data.draw(st.dictionaries(st.sampled_from((*names, "other")), _finite, max_size=3))
    expected = dict(before)
    for name, value in zip(names, values, strict=True):
        if value is not None:
            expected[name] = float(value)
    got = dict(before)
    float_setter(names)(got, values)
    assert _items(got) == _items(expected)


@pytest.mark.parametrize("names", [_NAMES, _ODD, _NAMES[:1]])
@given(data=st.data())
def test_float_dict_is_what_the_setter_puts_into_an_empty_dict(
    names: tuple[str, ...], data: st.DataObject
) -> None:
    # Every value present (one presized dict) as often as some absent (filled one by one).
    present = st.one_of(st.integers(0, 2**63 - 1), st.floats(allow_nan=False, allow_infinity=False))
    values = data.draw(st.one_of(st.tuples(*[present] * len(names)), st.tuples(*[_values] * len(names))))
    expected: dict[str, float] = {}
    float_setter(names)(expected, values)
    assert _items(float_dict(names)(values)) == _items(expected)


@pytest.mark.parametrize("names", [_NAMES, _ODD])
@given(data=st.data())
def test_rate_setter_sets_increase_times_factor_over_elapsed(
    names: tuple[str, ...], data: st.DataObject
) -> None:
    increases = data.draw(st.tuples(*[st.one_of(st.none(), st.integers(0, 2**63 - 1))] * len(names)))
    elapsed_ns = data.draw(st.integers(1, 10**12))
    factor = data.draw(st.sampled_from((1e9, 1e3, 0.5)))
    expected: dict[str, float] = {}
    for name, increase in zip(names, increases, strict=True):
        if increase is not None:
            expected[name] = increase * factor / elapsed_ns
    got: dict[str, float] = {}
    rate_setter(names, factor)(got, increases, elapsed_ns)
    assert _items(got) == _items(expected)


@pytest.mark.parametrize("names", [_NAMES, _ODD, _NAMES[:1]])
@given(data=st.data())
def test_summer_adds_left_to_right_in_name_order(names: tuple[str, ...], data: st.DataObject) -> None:
    dicts = data.draw(
        st.lists(st.fixed_dictionaries({name: _finite for name in reversed(names)}), min_size=1, max_size=6)
    )
    expected = {name: reduce(add, [fields[name] for fields in dicts]) for name in names}
    assert _items(summer(names)(dicts)) == _items(expected)
    assert _items(summer(names)(tuple(dicts))) == _items(expected)


def test_summer_keeps_the_order_of_additions_where_rounding_shows_it() -> None:
    total = summer(("a",))
    assert total([{"a": 1e16}, {"a": 1.0}, {"a": 1.0}]) == {"a": (1e16 + 1.0) + 1.0}
    assert total([{"a": 1.0}, {"a": 1.0}, {"a": 1e16}]) == {"a": 2.0 + 1e16}
    assert (1e16 + 1.0) + 1.0 != 2.0 + 1e16
    # Past the unrolled counts the loop keeps the same order.
    many = [{"a": 1e16}, *[{"a": 1.0}] * 5]
    assert total(many) == {"a": reduce(add, [fields["a"] for fields in many])} != {"a": 1e16 + 5.0}


def test_summer_of_nothing_is_empty_and_a_missing_name_is_a_key_error() -> None:
    total = summer(_NAMES)
    assert total([]) == {}
    complete = dict.fromkeys(_NAMES, 1.0)
    with pytest.raises(KeyError):
        total([complete, {_NAMES[0]: 1.0}])


@given(data=st.data())
def test_increases_are_the_differences_or_none_when_a_counter_went_backwards(data: st.DataObject) -> None:
    count = data.draw(st.integers(1, 16))
    old = data.draw(st.tuples(*[st.integers(10, 2**62)] * count))
    # Mostly forwards, now and then one backwards.
    steps = data.draw(st.tuples(*[st.integers(-10, 2**40)] * count))
    new = tuple(value + step for value, step in zip(old, steps, strict=True))
    differences = tuple(a - b for a, b in zip(new, old, strict=True))
    expected = None if min(differences) < 0 else differences
    assert increases_of(count)(new, old) == expected


def test_an_absent_counter_is_left_to_the_caller() -> None:
    with pytest.raises(TypeError):
        increases_of(3)((5, None, 7), (1, 2, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        increases_of(0)


def test_values_of_the_wrong_length_are_refused() -> None:
    put = float_setter(_NAMES)
    with pytest.raises(ValueError, match="unpack"):
        put({}, (1, 2))
    per_second = rate_setter(_NAMES[:2], 1e9)
    with pytest.raises(ValueError, match="unpack"):
        per_second({}, (1, 2, 3), 10)


@pytest.mark.parametrize("names", [(), ("a", "a"), ("a", 1)])
def test_no_names_duplicates_or_non_strings_are_refused(names: tuple[str, ...]) -> None:
    for build in (float_setter, float_dict, summer, lambda names: rate_setter(names, 1.0)):
        with pytest.raises(ValueError, match="distinct strings"):
            build(names)


def test_a_factor_must_be_finite() -> None:
    with pytest.raises(ValueError, match="finite"):
        rate_setter(_NAMES, float("inf"))

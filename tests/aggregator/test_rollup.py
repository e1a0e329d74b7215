"""Level gating and the cross-node rollup window: complete buckets, grace, late nodes, release, sums."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator import catalog
from aggregator.catalog import Level
from aggregator.points import Point
from aggregator.rollup import LEVEL_SPECS, FieldSums, NodeContribution, RollupWindow, add_fields

S = 1_000_000_000
RES = 10 * S
GRACE = 5 * S
CPU = catalog.CPU_USAGE_MILLICORES.name
MEM = catalog.MEMORY_USAGE_BYTES.name
CAPACITY = catalog.CPU_CAPACITY_MILLICORES.name
FS = catalog.FS_USAGE_BYTES.name
PODS = catalog.POD_COUNT.name
CONTAINERS = catalog.CONTAINER_COUNT.name
NODES = catalog.NODE_COUNT.name


def _window() -> RollupWindow:
    return RollupWindow(cluster="c1", resolution_ns=RES, grace_ns=GRACE)


def _contribution(cpu: float, *, namespaces: dict[str, float] | None = None) -> NodeContribution:
    """A node using ``cpu`` with 4000 mc capacity, and per namespace one pod using the given CPU."""
    namespaces = namespaces or {"shop": cpu}
    return NodeContribution(
        namespaces={
            name: {CPU: value, MEM: 100.0, FS: 7.0, PODS: 1.0, CONTAINERS: 2.0}
            for name, value in namespaces.items()
        },
        node={CPU: cpu, CAPACITY: 4000.0, MEM: 1000.0, FS: 9.0, PODS: float(len(namespaces))},
    )


def _by_measurement(points: list[Point]) -> dict[tuple[str, str], Point]:
    return {(point.measurement, point.tags.get("namespace", "")): point for point in points}


@pytest.mark.parametrize("level", list(Level))
def test_each_level_allows_exactly_the_catalogs_fields(level: Level) -> None:
    spec = LEVEL_SPECS[level]
    assert spec.measurement == level.value
    assert spec.allowed == {metric.name for metric in catalog.fields_for(level)}
    assert set(spec.names) == spec.allowed


def test_a_field_the_level_may_not_carry_is_refused() -> None:
    with pytest.raises(ValueError, match="cpu_capacity_millicores"):
        LEVEL_SPECS[Level.CONTAINER].point({"cluster": "c"}, {CAPACITY: 1.0}, 0)
    point = LEVEL_SPECS[Level.NODE].point({"cluster": "c"}, {CAPACITY: 1.0}, 5)
    assert point == Point("node", {"cluster": "c"}, {CAPACITY: 1.0}, 5)


def test_add_fields_sums_only_the_named_fields_and_keeps_absent_absent() -> None:
    into = {CPU: 1.0}
    add_fields(into, {CPU: 2.0, MEM: 3.0, FS: 4.0}, (CPU, MEM, CAPACITY))
    add_fields(into, {MEM: 1.0}, (CPU, MEM, CAPACITY))
    assert into == {CPU: 3.0, MEM: 4.0}


def test_the_first_bucket_waits_for_its_grace_because_nobody_knows_which_nodes_to_expect() -> None:
    window = _window()
    assert window.contribute(0, "n1", _contribution(100.0), now_ns=11 * S) == []
    assert window.tick(RES + GRACE - 1) == []
    points = window.tick(RES + GRACE)
    assert [point.measurement for point in points] == ["namespace", "cluster"]
    assert all(point.time_ns == 0 for point in points)
    assert window.tick(RES + GRACE + 1) == []


def test_a_bucket_is_emitted_as_soon_as_every_node_of_the_previous_one_reported() -> None:
    window = _window()
    window.contribute(0, "n1", _contribution(100.0), now_ns=11 * S)
    window.contribute(0, "n2", _contribution(300.0), now_ns=11 * S)
    window.tick(RES + GRACE)
    assert window.contribute(RES, "n2", _contribution(50.0), now_ns=21 * S) == []
    points = _by_measurement(window.contribute(RES, "n1", _contribution(70.0), now_ns=21 * S))
    assert points[("namespace", "shop")].fields == {CPU: 120.0, MEM: 200.0, PODS: 2.0, CONTAINERS: 4.0}
    assert points[("namespace", "shop")].tags == {"cluster": "c1", "namespace": "shop"}
    cluster = points[("cluster", "")]
    assert cluster.tags == {"cluster": "c1"}
    assert cluster.time_ns == RES
    assert cluster.fields == {CPU: 120.0, CAPACITY: 8000.0, MEM: 2000.0, PODS: 2.0, NODES: 2.0}
    # Emitted once: the grace deadline does not emit it again.
    assert window.tick(2 * RES + GRACE) == []


def test_namespaces_sum_over_nodes_and_only_where_present() -> None:
    window = _window()
    window.contribute(0, "n1", _contribution(0.0, namespaces={"shop": 10.0, "ops": 1.0}), now_ns=0)
    window.contribute(0, "n2", _contribution(0.0, namespaces={"shop": 20.0}), now_ns=0)
    points = _by_measurement(window.tick(RES + GRACE))
    assert points[("namespace", "shop")].fields[CPU] == 30.0
    assert points[("namespace", "shop")].fields[PODS] == 2.0
    assert points[("namespace", "ops")].fields[CPU] == 1.0
    assert points[("namespace", "ops")].fields[PODS] == 1.0
    assert points[("cluster", "")].fields[PODS] == 3.0


def test_fields_a_level_may_not_carry_are_left_out_of_the_sums() -> None:
    window = _window()
    window.contribute(0, "n1", _contribution(10.0), now_ns=0)
    points = _by_measurement(window.tick(RES + GRACE))
    assert FS not in points[("namespace", "shop")].fields
    assert FS not in points[("cluster", "")].fields


def test_a_late_node_re_emits_the_bucket_with_its_share() -> None:
    window = _window()
    window.contribute(0, "n1", _contribution(100.0), now_ns=0)
    window.tick(RES + GRACE)
    points = _by_measurement(window.contribute(0, "n2", _contribution(20.0), now_ns=RES + GRACE + S))
    assert points[("cluster", "")].fields[CPU] == 120.0
    assert points[("cluster", "")].fields[NODES] == 2.0
    assert points[("namespace", "shop")].fields[CPU] == 120.0
    assert window.reemitted == 1


def test_a_node_reporting_twice_in_a_bucket_replaces_its_first_share() -> None:
    window = _window()
    window.contribute(0, "n1", _contribution(100.0), now_ns=0)
    window.contribute(0, "n1", _contribution(40.0), now_ns=0)
    points = _by_measurement(window.tick(RES + GRACE))
    assert points[("cluster", "")].fields[CPU] == 40.0
    assert points[("cluster", "")].fields[NODES] == 1.0


def test_a_node_that_stops_reporting_delays_one_bucket_only() -> None:
    window = _window()
    window.contribute(0, "n1", _contribution(1.0), now_ns=0)
    window.contribute(0, "gone", _contribution(1.0), now_ns=0)
    window.tick(RES + GRACE)
    assert window.contribute(RES, "n1", _contribution(1.0), now_ns=RES + S) == []
    points = _by_measurement(window.tick(2 * RES + GRACE))
    assert points[("cluster", "")].fields[NODES] == 1.0
    # The bucket after that expects only the nodes that reported in this one.
    assert window.contribute(2 * RES, "n1", _contribution(1.0), now_ns=2 * RES + S) != []


def test_a_new_node_is_not_waited_for_but_joins_by_re_emission() -> None:
    window = _window()
    window.contribute(0, "n1", _contribution(1.0), now_ns=0)
    window.tick(RES + GRACE)
    assert window.contribute(RES, "n1", _contribution(1.0), now_ns=RES + S) != []
    points = _by_measurement(window.contribute(RES, "new", _contribution(2.0), now_ns=RES + S))
    assert points[("cluster", "")].fields[NODES] == 2.0


def test_old_buckets_are_released_and_contributions_to_them_dropped() -> None:
    window = _window()
    window.contribute(0, "n1", _contribution(1.0), now_ns=0)
    assert len(window) == 1
    window.tick(RES + GRACE)
    assert len(window) == 1
    window.tick(RES + GRACE + 3 * RES)
    assert len(window) == 0
    # A lone late node must not overwrite the bucket's complete rollups with its share alone.
    assert window.contribute(0, "n2", _contribution(1.0), now_ns=RES + GRACE + 3 * RES) == []
    assert window.too_late == 1
    assert len(window) == 0


def test_a_tick_emits_every_overdue_bucket_in_time_order() -> None:
    window = _window()
    window.contribute(0, "n1", _contribution(1.0), now_ns=0)
    window.contribute(2 * RES, "n1", _contribution(2.0), now_ns=0)
    points = window.tick(2 * RES + RES + GRACE)
    assert [(point.measurement, point.time_ns) for point in points] == [
        ("namespace", 0),
        ("cluster", 0),
        ("namespace", 2 * RES),
        ("cluster", 2 * RES),
    ]


def test_bad_window_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="resolution_ns"):
        RollupWindow(cluster="c", resolution_ns=0, grace_ns=0)


def test_a_replaced_share_of_an_emitted_bucket_is_re_emitted_by_the_next_tick() -> None:
    window = _window()
    window.contribute(0, "n1", _contribution(100.0), now_ns=0)
    window.contribute(0, "n2", _contribution(20.0), now_ns=0)
    first = _by_measurement(window.tick(RES + GRACE))
    assert first[("cluster", "")].fields[CPU] == 120.0
    # Recomputing every node's share per replacement would cost O(nodes) per batch: it waits for a tick.
    assert window.contribute(0, "n1", _contribution(60.0), now_ns=RES + GRACE) == []
    assert window.contribute(0, "n2", _contribution(30.0), now_ns=RES + GRACE) == []
    again = _by_measurement(window.tick(RES + GRACE + 1))
    assert again[("cluster", "")].fields[CPU] == 90.0
    assert again[("cluster", "")].fields[NODES] == 2.0
    assert again[("namespace", "shop")].fields[CPU] == 90.0
    assert again[("namespace", "shop")].fields[PODS] == 2.0
    assert window.reemitted == 1
    assert window.tick(RES + GRACE + 2) == []


def test_a_late_node_after_a_replacement_sums_every_current_share() -> None:
    window = _window()
    window.contribute(0, "n1", _contribution(100.0), now_ns=0)
    window.contribute(0, "n1", _contribution(40.0, namespaces={"ops": 40.0}), now_ns=0)
    window.tick(RES + GRACE)
    points = _by_measurement(window.contribute(0, "n2", _contribution(5.0), now_ns=RES + GRACE))
    assert points[("cluster", "")].fields[CPU] == 45.0
    assert points[("namespace", "ops")].fields[CPU] == 40.0
    # n1's replaced share had "shop"; only n2's is left there.
    assert points[("namespace", "shop")].fields[CPU] == 5.0
    assert points[("namespace", "shop")].fields[PODS] == 1.0


def test_emitted_points_keep_their_values_when_late_nodes_add_to_the_bucket() -> None:
    window = _window()
    window.contribute(0, "n1", _contribution(100.0), now_ns=0)
    first = _by_measurement(window.tick(RES + GRACE))
    window.contribute(0, "n2", _contribution(20.0), now_ns=RES + GRACE + S)
    window.contribute(0, "n3", _contribution(30.0), now_ns=RES + GRACE + S)
    assert first[("cluster", "")].fields[CPU] == 100.0
    assert first[("cluster", "")].fields[NODES] == 1.0
    assert first[("namespace", "shop")].fields == {CPU: 100.0, MEM: 100.0, PODS: 1.0, CONTAINERS: 2.0}


def test_a_level_spec_refuses_names_the_catalog_does_not_allow_on_it() -> None:
    LEVEL_SPECS[Level.POD].require([CPU, MEM])
    with pytest.raises(ValueError, match="cpu_capacity_millicores"):
        LEVEL_SPECS[Level.POD].require([CPU, CAPACITY])


_NAMES = (CPU, MEM, FS, PODS)
_field_dicts = st.lists(
    st.dictionaries(
        st.sampled_from((*_NAMES, CAPACITY)),
        st.floats(min_value=0, max_value=1e15, allow_nan=False),
    ),
    max_size=5,
)


@given(
    st.one_of(_field_dicts, st.lists(st.fixed_dictionaries({name: st.floats(0, 1e15) for name in _NAMES})))
)
def test_field_sums_equal_add_fields_exactly_whatever_is_present(dicts: list[dict[str, float]]) -> None:
    expected: dict[str, float] = {}
    for fields in dicts:
        add_fields(expected, fields, _NAMES)
    assert FieldSums(_NAMES).total(dicts) == expected

"""The kubelet payload models: Kubernetes quantities, RFC 3339 timestamps, optional fields."""

from __future__ import annotations

import calendar
from decimal import Decimal

import pytest
from pydantic import ValidationError

from collector.sources.kubelet_models import (
    ContainerStats,
    NodeDocument,
    PodList,
    ResourceRequirements,
    Summary,
    parse_quantity,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", Decimal("0.1")),
        ("0.5", Decimal("0.5")),
        ("1", Decimal(1)),
        ("7910m", Decimal("7.91")),
        ("128Mi", Decimal(128 * 1024 * 1024)),
        ("32144656Ki", Decimal(32144656 * 1024)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("1G", Decimal(10**9)),
        ("5M", Decimal(5_000_000)),
        ("1k", Decimal(1000)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("2e-3", Decimal("0.002")),
        ("1E", Decimal(10**18)),
        ("2Ei", Decimal(2**61)),
        ("500u", Decimal("0.0005")),
        ("10n", Decimal("0.00000001")),
        (".5", Decimal("0.5")),
        ("5.", Decimal(5)),
        ("+1", Decimal(1)),
        ("-1", Decimal(-1)),
        ("0", Decimal(0)),
    ],
)
def test_parse_quantity_exact_values(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


NOT_QUANTITIES = ["", " 1", "1 ", "Mi", "1.2.3", "1Ki2", "1KiB", "1kb", "1e", "1e+", "abc", "1e31", "0x10"]


@pytest.mark.parametrize("text", [*NOT_QUANTITIES, "1_000", "\u0661"])
def test_parse_quantity_refuses_non_quantities(text: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        parse_quantity(text)


def test_resource_lists_hold_exact_quantities() -> None:
    resources = ResourceRequirements.model_validate(
        {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": 2, "nvidia.com/gpu": "1"}}
    )
    assert resources.requests == {"cpu": Decimal("0.25"), "memory": Decimal(64 * 2**20)}
    assert resources.limits == {"cpu": Decimal(2), "nvidia.com/gpu": Decimal(1)}
    with pytest.raises(ValidationError):
        ResourceRequirements.model_validate({"requests": {"cpu": "lots"}})


def _epoch_ns(text: str) -> int:
    fields = (text[0:4], text[5:7], text[8:10], text[11:13], text[14:16], text[17:19])
    return calendar.timegm(tuple(int(field) for field in fields)) * 10**9


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        ("2020-09-16T03:30:58Z", _epoch_ns("2020-09-16T03:30:58")),
        ("2020-09-16T03:30:58.5Z", _epoch_ns("2020-09-16T03:30:58") + 500_000_000),
        ("2020-09-16T03:30:58.123456789Z", _epoch_ns("2020-09-16T03:30:58") + 123_456_789),
        ("2020-09-16T05:30:58+02:00", _epoch_ns("2020-09-16T03:30:58")),
    ],
)
def test_timestamps_become_epoch_nanoseconds(text: str, nanoseconds: int) -> None:
    stats = ContainerStats.model_validate({"name": "c", "startTime": text})
    assert stats.start_time == nanoseconds


@pytest.mark.parametrize("text", ["yesterday", "2020-09-16T03:30:58", "2020-13-16T03:30:58Z", "1600227058"])
def test_bad_timestamps_are_refused(text: str) -> None:
    with pytest.raises(ValidationError):
        ContainerStats.model_validate({"name": "c", "startTime": text})


def test_absent_blocks_and_fields_stay_none() -> None:
    summary = Summary.model_validate_json(
        b'{"node": {"nodeName": "n1"}, "pods": [{"podRef": {"name": "p", "namespace": "ns", "uid": "u"},'
        b' "containers": [{"name": "c", "cpu": {"time": "2020-09-16T03:30:58Z"}}]}]}'
    )
    container = summary.pods[0].containers[0]
    assert container.cpu is not None
    assert container.cpu.usage_core_nano_seconds is None
    assert container.memory is None
    assert container.rootfs is None
    assert summary.node.cpu is None
    assert summary.pods[0].network is None


def test_unknown_fields_are_ignored() -> None:
    pods = PodList.model_validate_json(
        b'{"kind": "PodList", "items": [{"metadata": {"name": "p", "future": 1}, "spec": {"new": true}}]}'
    )
    assert pods.items[0].metadata.name == "p"


def test_node_document_finds_the_node_in_a_list_or_alone() -> None:
    single = NodeDocument.model_validate_json(
        b'{"kind": "Node", "metadata": {"name": "n1", "labels": {"a": "b"}},'
        b' "status": {"capacity": {"cpu": "4"}}}'
    )
    node = single.node_named("n1")
    assert node is not None
    assert node.status.capacity == {"cpu": Decimal(4)}
    assert node.metadata.labels == {"a": "b"}
    assert single.node_named("n2") is None
    listed = NodeDocument.model_validate_json(
        b'{"kind": "NodeList", "metadata": {"resourceVersion": "1"}, "items": ['
        b'{"metadata": {"name": "n1"}},'
        b' {"metadata": {"name": "n2"}, "status": {"allocatable": {"cpu": "1"}}}]}'
    )
    second = listed.node_named("n2")
    assert second is not None
    assert second.status.allocatable == {"cpu": Decimal(1)}
    assert listed.node_named("n3") is None

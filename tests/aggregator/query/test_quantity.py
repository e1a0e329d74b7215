"""The quantity formatter against canonical strings Kubernetes itself prints."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aggregator.query.quantity import binary_si, cpu_quantity, decimal_si, memory_quantity
from collector.sources.kubelet_models import parse_quantity

_PARTS = re.compile(r"(?P<mantissa>-?\d+)(?P<suffix>[numkMGTPE]|[KMGTPE]i)?")
_INT64_MAX = 2**63 - 1


@pytest.mark.parametrize(
    ("nanocores", "expected"),
    [
        (1_500_000_000, "1500m"),
        (123_456_789, "123456789n"),
        (5_000_000, "5m"),
        (1_000_000_000, "1"),
        (2_000_000_000, "2"),
        (2_500_000_000_000, "2500"),
        (1_000_000_000_000, "1k"),
        (12_000_000_000_000, "12k"),
        (100_000, "100u"),
        (1_000, "1u"),
        (10, "10n"),
        (1, "1n"),
        (0, "0"),
        (-5_000_000, "-5m"),
    ],
)
def test_nanocores_print_as_metrics_server_prints_them(nanocores: int, expected: str) -> None:
    assert decimal_si(nanocores, scale=-9) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1500, "1500"),
        (1000, "1k"),
        (1_000_000, "1M"),
        (10**18, "1E"),
        (2**63 - 1, "9223372036854775807"),
        (-(2**63), "-9223372036854775808"),
    ],
)
def test_decimal_si_picks_the_largest_suffix_that_loses_nothing(value: int, expected: str) -> None:
    assert decimal_si(value) == expected


@pytest.mark.parametrize(
    ("num_bytes", "expected"),
    [
        (0, "0"),
        (1, "1"),
        (512, "512"),
        (1000, "1k"),  # below 1024 Kubernetes prints binary quantities in decimal SI
        (1023, "1023"),
        (1024, "1Ki"),
        (1025, "1025"),
        (1536, "1536"),
        (2048, "2Ki"),
        (5000, "5000"),
        (1_000_000, "1000000"),
        (12_641_280, "12345Ki"),
        (1_048_576, "1Mi"),
        (1_610_612_736, "1536Mi"),  # Kubernetes' own example: 1.5Gi is serialized as 1536Mi
        (1_073_741_824, "1Gi"),
        (2**60, "1Ei"),
        (3 * 2**61, "6Ei"),
        (-1024, "-1Ki"),
        (-1000, "-1k"),
    ],
)
def test_binary_si_is_canonical(num_bytes: int, expected: str) -> None:
    assert binary_si(num_bytes) == expected


def test_usage_in_kpulse_units_converts_to_kubernetes_units() -> None:
    assert cpu_quantity(1500.0) == "1500m"
    assert cpu_quantity(0.123456789) == "123457n"  # millicores in, nanocores out, rounded
    assert cpu_quantity(250.0) == "250m"
    assert memory_quantity(64 * 1024 * 1024) == "64Mi"
    assert memory_quantity(12_641_280.4) == "12345Ki"


def test_usage_is_never_printed_negative_and_bad_input_is_refused() -> None:
    assert cpu_quantity(-1e-9) == "0"
    assert memory_quantity(-3.0) == "0"
    with pytest.raises(ValueError, match="finite"):
        cpu_quantity(float("nan"))
    with pytest.raises(ValueError, match="int64"):
        binary_si(2**63)
    with pytest.raises(ValueError, match="scale"):
        decimal_si(1, scale=3)


def _assert_canonical(text: str, value: Decimal, *, binary: bool = False) -> None:
    """``text`` is exactly ``value`` (read back by the collector's quantity parser), with no fractional
    digits and the largest suffix that allows both: Kubernetes' canonical form, decimal or binary SI."""
    assert parse_quantity(text) == value
    parts = _PARTS.fullmatch(text)
    assert parts is not None, f"{text!r} has fractional digits or an exponent"
    mantissa, suffix = int(parts["mantissa"]), parts["suffix"] or ""
    if mantissa == 0:
        assert text == "0"
    elif binary and abs(value) >= 1024:
        assert suffix in ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
        assert mantissa % 1024 or suffix == "Ei", f"{text!r}: a larger binary suffix would hold it"
    else:
        assert not suffix.endswith("i")
        assert mantissa % 1000 or suffix == "E", f"{text!r}: a larger decimal suffix would hold it"


@given(st.integers(min_value=-(2**63), max_value=_INT64_MAX), st.sampled_from([-9, -6, -3, 0]))
def test_decimal_si_is_exact_and_canonical_for_every_int64(value: int, scale: int) -> None:
    _assert_canonical(decimal_si(value, scale=scale), Decimal(value).scaleb(scale))


@given(st.integers(min_value=-(2**63), max_value=_INT64_MAX))
def test_binary_si_is_exact_and_canonical_for_every_int64(value: int) -> None:
    _assert_canonical(binary_si(value), Decimal(value), binary=True)


@given(st.floats(min_value=0, max_value=9e12) | st.integers(0, 10**9).map(lambda n: n / 1000))
def test_cpu_usage_is_the_rounded_nanocores_in_canonical_form(millicores: float) -> None:
    _assert_canonical(cpu_quantity(millicores), Decimal(round(millicores * 1_000_000)).scaleb(-9))


@given(
    st.floats(min_value=0, max_value=9e18)
    | st.integers(0, 2**50).map(lambda pages: float(pages * 4096))
    | st.integers(0, 2**40).map(float)
    # Whole binary units: every suffix, Ki to Ei, must be reachable.
    | st.integers(0, 6).flatmap(
        lambda power: st.integers(1, 2 ** (62 - 10 * power)).map(lambda m: float(m << 10 * power))
    )
)
def test_memory_usage_is_the_rounded_bytes_in_canonical_form(num_bytes: float) -> None:
    _assert_canonical(memory_quantity(num_bytes), Decimal(round(num_bytes)), binary=True)

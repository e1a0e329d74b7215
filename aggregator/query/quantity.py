"""Kubernetes resource quantities in canonical form, as the API server and metrics-server print them.

Canonical form (Kubernetes' rule): no precision lost, no fractional digits, and the largest suffix that
allows both. Decimal SI quantities use a power-of-1000 suffix (``n u m "" k M G T P E``); binary SI ones a
power-of-1024 suffix (``Ki Mi Gi Ti Pi Ei``), except that a binary value strictly between -1024 and 1024
is printed in decimal SI (so 1000 bytes is ``1k``, 512 bytes is ``512``), and a value that is not a
multiple of 1024 has no suffix at all.

metrics-server reports CPU as nanocores with scale -9 (decimal SI) and memory as bytes (binary SI); so do
:func:`cpu_quantity` and :func:`memory_quantity`.

Usage::

    decimal_si(1_500_000_000, scale=-9)   # "1500m"
    binary_si(12_641_280)                 # "12345Ki"
    cpu_quantity(1500.0)                  # "1500m" (millicores in)
"""

from __future__ import annotations

import math

_DECIMAL_SUFFIXES = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}
_BINARY_SUFFIXES = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")
_MAX_BINARY_POWER = len(_BINARY_SUFFIXES) - 1
_INT64_MAX = 2**63 - 1
_NANOCORES_PER_MILLICORE = 1_000_000
_FAST_BELOW = 2.0**62
"""Finite, non-negative floats below this round to an int64 without clamping (NaN compares false)."""


def decimal_si(value: int, *, scale: int = 0) -> str:
    """``value`` x 10^``scale`` as a canonical decimal SI quantity (e.g. ``(5_000_000, -9)`` -> ``"5m"``).

    ``value`` must fit in int64 and ``scale`` lie in -9..0 (nano to unit), so every result has an SI suffix.
    """
    _check_int64(value)
    if not -9 <= scale <= 0:
        raise ValueError(f"scale {scale} is outside -9..0")
    if value % 10 and scale % 3 == 0:
        # No trailing zero and a scale with a suffix: already canonical (most CPU rates, nanocores).
        return f"{value}{_DECIMAL_SUFFIXES[scale]}"
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa = abs(value)
    exponent = scale
    # Every trailing zero moves into the exponent: the largest exponent loses no precision...
    while mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    # ...then it comes down to the nearest multiple of 3 below, the only exponents with a suffix.
    shift = exponent % 3
    mantissa *= 10**shift
    exponent -= shift
    # An int64 at scale -9..0 has at most 19 digits, so the exponent stays within -9..18: n to E.
    return f"{sign}{mantissa}{_DECIMAL_SUFFIXES[exponent]}"


def binary_si(value: int) -> str:
    """``value`` (an integer, e.g. bytes) as a canonical binary SI quantity (``1024`` -> ``"1Ki"``)."""
    _check_int64(value)
    if -1024 < value < 1024:
        # Kubernetes prints small binary quantities in decimal SI so nothing is rounded: 1000 -> "1k".
        return decimal_si(value)
    sign = "-" if value < 0 else ""
    mantissa = abs(value)
    # Each power of 1024 is ten trailing zero bits; the lowest set bit says how many there are at once.
    power = min(((mantissa & -mantissa).bit_length() - 1) // 10, _MAX_BINARY_POWER)
    return f"{sign}{mantissa >> (10 * power)}{_BINARY_SUFFIXES[power]}"


def cpu_quantity(millicores: float) -> str:
    """CPU usage in millicores as metrics-server prints it: nanocores, canonical decimal SI."""
    nanocores = millicores * _NANOCORES_PER_MILLICORE
    if 0.0 <= nanocores < _FAST_BELOW:
        # The common case, on the hot path of a 30,000-pod list: no clamping or range check needed.
        whole = round(nanocores)
        if whole % 10:
            return f"{whole}n"
        return decimal_si(whole, scale=-9)
    return decimal_si(_to_int(nanocores), scale=-9)


def memory_quantity(num_bytes: float) -> str:
    """A memory amount in bytes as metrics-server prints it: whole bytes, canonical binary SI."""
    if 0.0 <= num_bytes < _FAST_BELOW:
        whole = round(num_bytes)
        if whole >= 1024:
            if whole & 1023:
                return str(whole)  # not a multiple of 1024: no suffix holds it exactly
            power = min(((whole & -whole).bit_length() - 1) // 10, _MAX_BINARY_POWER)
            return f"{whole >> (10 * power)}{_BINARY_SUFFIXES[power]}"
        return binary_si(whole)
    return binary_si(_to_int(num_bytes))


def _to_int(value: float) -> int:
    if not math.isfinite(value):
        raise ValueError(f"{value} is not a finite quantity")
    # Usage is never negative; a rounding artefact below zero must not print as "-1n".
    return min(max(round(value), 0), _INT64_MAX)


def _check_int64(value: int) -> None:
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise ValueError(f"{value} does not fit in int64, the range of Kubernetes integer quantities")

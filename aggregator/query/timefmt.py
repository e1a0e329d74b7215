"""Times and durations in the exact text forms the two APIs use (Go's), and strict RFC 3339 parsing.

Heapster printed times as Go's ``time.RFC3339Nano`` (fraction without trailing zeros); Kubernetes objects
print ``metav1.Time`` in whole seconds; ``window`` is a Go ``time.Duration`` string (``10s``, ``1m0s``).
Times inside kpulse are integer nanoseconds since the epoch (UTC).

Usage::

    parse_rfc3339("2024-05-01T12:00:00.5+02:00")   # 1714557600500000000 (ns)
    heapster_time(1714557600500000000)             # "2024-05-01T10:00:00.5Z"
    kubernetes_time(1714557600500000000)           # "2024-05-01T10:00:00Z"
    go_duration(10_000_000_000)                    # "10s"
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from aggregator.query.errors import BadTimeError

_NS_PER_S = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt](?P<time>\d{2}:\d{2}:\d{2})(?:\.(?P<fraction>\d{1,9}))?"
    r"(?P<zone>[Zz]|[+-]\d{2}:\d{2})"
)
_INT64_MAX = 2**63 - 1

GO_ZERO_TIME = "0001-01-01T00:00:00Z"
"""How Go prints an unset ``time.Time``; Heapster's ``latestTimestamp`` when there is no point."""


def parse_rfc3339(text: str, *, name: str = "time") -> int:
    """``text`` (RFC 3339, fraction up to ns, any offset) as ns since the epoch; ``BadTimeError`` if not.

    ``name`` names the parameter in the error message. Times outside what InfluxDB can hold
    (1677..2262, int64 ns) are refused too.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise BadTimeError(
            f"{name}={text!r} is not an RFC 3339 time (expected e.g. 2024-05-01T12:00:00Z or "
            "2024-05-01T12:00:00.5+02:00)"
        )
    zone = match["zone"].upper()
    try:
        whole = datetime.fromisoformat(f"{match['date']}T{match['time']}{'+00:00' if zone == 'Z' else zone}")
    except ValueError as exc:
        raise BadTimeError(f"{name}={text!r} is not a valid time: {exc}") from exc
    # Exact integer arithmetic: a float would lose the nanoseconds of present-day times.
    delta = whole - _EPOCH
    seconds = delta.days * 86_400 + delta.seconds
    nanos = int((match["fraction"] or "").ljust(9, "0"))
    value = seconds * _NS_PER_S + nanos
    if not -_INT64_MAX - 1 <= value <= _INT64_MAX:
        raise BadTimeError(f"{name}={text!r} is outside the years 1678..2261 that InfluxDB can store")
    return value


def _utc(ns: int) -> datetime:
    return _EPOCH + timedelta(seconds=ns // _NS_PER_S)


def heapster_time(ns: int) -> str:
    """``ns`` since the epoch as Go's RFC3339Nano in UTC: ``2024-05-01T10:00:00Z``, ``...00.5Z``."""
    whole = _utc(ns).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = ns % _NS_PER_S
    if fraction:
        return f"{whole}.{f'{fraction:09d}'.rstrip('0')}Z"
    return f"{whole}Z"


def kubernetes_time(ns: int) -> str:
    """``ns`` since the epoch as ``metav1.Time`` prints it: RFC 3339 in UTC, whole seconds (truncated)."""
    return _utc(ns).strftime("%Y-%m-%dT%H:%M:%SZ")


def go_duration(ns: int) -> str:
    """A duration in ns as Go's ``time.Duration.String()``: ``10s``, ``1m0s``, ``500ms``, ``1.5s``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < _NS_PER_S:
        # Below a second Go picks the largest unit that keeps an integer part: ns, µs or ms.
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return f"{sign}{_decimal(ns, size)}{unit}"
    hours, rest = divmod(ns, 3600 * _NS_PER_S)
    minutes, rest = divmod(rest, 60 * _NS_PER_S)
    text = f"{_decimal(rest, _NS_PER_S)}s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def _decimal(value: int, unit: int) -> str:
    whole, fraction = divmod(value, unit)
    if not fraction:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{f'{fraction:0{digits}d}'.rstrip('0')}"

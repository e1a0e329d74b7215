"""Code for the ingest path's per-sample work, compiled once per tuple of field names (or counter count).

The pipeline turns every sample's counters into increases and its values into dicts of named floats, and sums
those up the levels. On the CPython this runs on (3.11 without PGO/LTO) a loop over the names costs 85-120 ns
per field, and C helpers (``itemgetter``, ``map(add)``, ``dict(zip())``) chained per field about as much;
straight-line code naming each field as a constant costs a half to a third of that (docs/performance.md).
So, as ``collections.namedtuple`` and ``dataclasses`` do, these functions write that code from the names,
once, at import; the names come from the catalog, which stays the single source of truth. Each does exactly
what the loop it stands for would: same insertion order, ``None`` left out, sums added left to right.

Usage::

    put = float_setter(("memory_usage_bytes", "memory_limit_bytes"))
    fields: dict[str, float] = {}
    put(fields, (1024, None))                                   # fields == {"memory_usage_bytes": 1024.0}
    per_second = rate_setter(("rx_bytes_per_second",), 1e9)
    per_second(fields, (500,), 10**9)                           # rx_bytes_per_second: 500 per second
    total = summer(("a", "b"))
    total([{"a": 1.0, "b": 2.0}, {"a": 3.0, "b": 4.0}])         # {"a": 4.0, "b": 6.0}
    increases_of(2)((15, 7), (10, 7))                           # (5, 0); None if one went backwards
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

FloatSetter = Callable[[dict[str, float], Sequence[float | int | None]], None]
"""``(into, values)``: ``into[names[i]] = float(values[i])`` for each value that is not ``None``, in order."""
FloatDict = Callable[[Sequence[float | int | None]], dict[str, float]]
"""``(values)``: a new dict as a :data:`FloatSetter` would fill an empty one."""
RateSetter = Callable[[dict[str, float], Sequence[float | int | None], int], None]
"""``(into, increases, elapsed_ns)``: ``into[names[i]] = increases[i] * factor / elapsed_ns`` for each
increase that is not ``None``, in order."""
Increases = Callable[[tuple[int, ...], tuple[int, ...]], tuple[int, ...] | None]
"""``(counters, previous)``, both ``count`` long: each counter's increase, or ``None`` when one went
backwards; ``TypeError`` when one of either is ``None`` (the caller falls back to a loop)."""
_UNROLLED = 4
"""Up to this many dicts, a summer adds them in one expression per name rather than in a loop."""
Summer = Callable[[Sequence[Mapping[str, float]]], dict[str, float]]
"""``(dicts)``: ``{name: dicts[0][name] + dicts[1][name] + ...}`` over ``names`` in order (``{}`` for no
dicts); ``KeyError`` when a dict lacks one of the names."""


def float_setter(names: Sequence[str]) -> FloatSetter:
    """A :data:`FloatSetter` for ``names`` (values in the same units as the fields they become)."""
    names = _checked(names)
    lines = ["def put(into, values):", f"    {_unpack(names)}= values"]
    for index, name in enumerate(names):
        lines += [f"    if v{index} is not None:", f"        into[{name!r}] = float(v{index})"]
    put: FloatSetter = _compile(lines, "put")
    return put


def float_dict(names: Sequence[str]) -> FloatDict:
    """A :data:`FloatDict` for ``names`` (values in the same units as the fields they become)."""
    names = _checked(names)
    every = " and ".join(f"v{index} is not None" for index in range(len(names)))
    entries = ", ".join(f"{name!r}: float(v{index})" for index, name in enumerate(names))
    lines = [
        "def fields(values):",
        f"    {_unpack(names)}= values",
        # All present (the usual case): one presized dict, which holds a few more fields without growing.
        f"    if {every}:",
        f"        return {{{entries}}}",
        "    into = {}",
    ]
    for index, name in enumerate(names):
        lines += [f"    if v{index} is not None:", f"        into[{name!r}] = float(v{index})"]
    lines.append("    return into")
    fields: FloatDict = _compile(lines, "fields")
    return fields


def rate_setter(names: Sequence[str], factor: float) -> RateSetter:
    """A :data:`RateSetter` for ``names``: an increase over ``elapsed_ns`` (ns) times ``factor`` (1e9: per
    second; 1e3 for CPU nanoseconds: millicores)."""
    names = _checked(names)
    if not math.isfinite(factor):
        raise ValueError("factor must be a finite float")
    lines = ["def per_second(into, values, elapsed_ns):", f"    {_unpack(names)}= values"]
    for index, name in enumerate(names):
        lines += [
            f"    if v{index} is not None:",
            f"        into[{name!r}] = v{index} * {float(factor)!r} / elapsed_ns",
        ]
    per_second: RateSetter = _compile(lines, "per_second")
    return per_second


def summer(names: Sequence[str]) -> Summer:
    """A :data:`Summer` for ``names`` (fields of one unit each, summed as they are)."""
    names = _checked(names)
    lines = ["def total(dicts):", "    count = len(dicts)"]
    # One expression per name for the common small counts (a pod's containers, a namespace's pods on a
    # node, a running sum and a node's share); a loop over the rest.
    for count in range(1, _UNROLLED + 1):
        operands = [f"d{position}" for position in range(count)]
        lines += [f"    if count == {count}:", f"        {''.join(f'{d}, ' for d in operands)}= dicts"]
        entries = (f"{name!r}: " + " + ".join(f"{d}[{name!r}]" for d in operands) for name in names)
        lines.append("        return {" + ", ".join(entries) + "}")
    lines += [
        "    if not count:",
        "        return {}",
        "    first = dicts[0]",
        *(f"    s{index} = first[{name!r}]" for index, name in enumerate(names)),
        "    for fields in dicts[1:]:",
        *(f"        s{index} += fields[{name!r}]" for index, name in enumerate(names)),
        "    return {" + ", ".join(f"{name!r}: s{index}" for index, name in enumerate(names)) + "}",
    ]
    total: Summer = _compile(lines, "total")
    return total


def increases_of(count: int) -> Increases:
    """An :data:`Increases` for tuples of ``count`` counters."""
    if count < 1:
        raise ValueError("count must be at least 1")
    new = [f"c{index}" for index in range(count)]
    old = [f"p{index}" for index in range(count)]
    lines = [
        "def increases(counters, previous):",
        f"    {''.join(f'{name}, ' for name in new)}= counters",
        f"    {''.join(f'{name}, ' for name in old)}= previous",
        f"    if {' or '.join(f'{c} < {p}' for c, p in zip(new, old, strict=True))}:",
        "        return None",
        f"    return ({''.join(f'{c} - {p}, ' for c, p in zip(new, old, strict=True))})",
    ]
    increases: Increases = _compile(lines, "increases")
    return increases


def _unpack(names: Sequence[str]) -> str:
    # The trailing comma makes a single name a one-element target too.
    return "".join(f"v{index}, " for index in range(len(names)))


def _checked(names: Sequence[str]) -> Sequence[str]:
    if not names or not all(isinstance(name, str) for name in names) or len(set(names)) != len(names):
        raise ValueError(f"field names must be one or more distinct strings: {names!r}")
    return names


def _compile(lines: list[str], function: str) -> Any:
    namespace: dict[str, Any] = {}
    # Names are written as repr() literals, so any string is safe; nothing else varies in the source.
    exec(compile("\n".join(lines) + "\n", f"<fieldcode {function}>", "exec"), {}, namespace)  # noqa: S102
    return namespace[function]

"""A measured value against its target, and the line printed for it: ``name value unit target ratio``."""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Direction = Literal["max", "min", "info"]
"""``max``: the value must stay at or below the target; ``min``: at or above; ``info``: no target."""


@dataclass(frozen=True, slots=True)
class Measure:
    """A measured value; ``ratio`` is value/target: ``<= 1`` meets a ``max`` target, ``>= 1`` a ``min``."""

    name: str
    value: float
    unit: str
    target: float | None = None
    direction: Direction = "info"

    @property
    def ratio(self) -> float | None:
        if self.target is None or self.direction == "info" or self.target == 0:
            return None
        return self.value / self.target

    @property
    def met(self) -> bool | None:
        ratio = self.ratio
        if ratio is None:
            return None
        return ratio <= 1.0 if self.direction == "max" else ratio >= 1.0

    def line(self) -> str:
        """``name value unit target ratio`` (``-`` where there is no target), plus ok/MISS."""
        target = "-" if self.target is None else f"{'<=' if self.direction == 'max' else '>='}{self.target:g}"
        ratio = self.ratio
        verdict = "" if self.met is None else (" ok" if self.met else " MISS")
        ratio_text = "-" if ratio is None else f"{ratio:.3f}"
        return f"{self.name} {_number(self.value)} {self.unit} {target} {ratio_text}{verdict}"


def _number(value: float) -> str:
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}" if abs(value) < 1e-3 else f"{value:.4f}".rstrip("0").rstrip(".")


def load_average() -> str:
    """The 1/5/15-minute load averages, as the kernel reports them."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def header(mode: str) -> list[str]:
    """Machine lines printed before the measures (each starts with ``#``)."""
    return [
        f"# kpulse benchmarks ({mode})",
        f"# cores={os.cpu_count()} load_average={load_average()} python={platform.python_version()} "
        f"implementation={sys.implementation.name} machine={platform.machine()} kernel={platform.release()}",
        "# columns: name value unit target ratio-to-target",
    ]


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (0..1) of ``values``, nearest-rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean (0 for no values)."""
    return statistics.fmean(values) if values else 0.0

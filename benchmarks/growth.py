"""Growth: ingest CPU and memory at several cluster sizes, and the ``base + k × nodes`` fit for sizing."""

from __future__ import annotations

from collections.abc import Sequence

from benchmarks.ingest import INTERVAL_SECONDS, IngestRun
from benchmarks.report import Measure

_MIB = 1024 * 1024


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``(base, slope)`` of ``y = base + slope × x`` (two or more distinct ``xs``)."""
    n = len(xs)
    if n < 2:
        raise ValueError("a line needs at least two points")
    mean_x = sum(xs) / n
    mean_y = sum(ys) / n
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        raise ValueError("a line needs two distinct x values")
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread
    return mean_y - slope * mean_x, slope


def growth_measures(runs: Sequence[IngestRun], process_base_bytes: int) -> tuple[list[Measure], list[str]]:
    """Per-size CPU and memory lines, the fitted slopes, and the sizing formulas as text."""
    nodes = [float(run.nodes) for run in runs]
    millicores = [run.cpu_seconds_per_round / INTERVAL_SECONDS * 1000 for run in runs]
    mebibytes = [(process_base_bytes + run.traced_bytes) / _MIB for run in runs]
    measures: list[Measure] = []
    for run, cpu, memory in zip(runs, millicores, mebibytes, strict=True):
        measures.append(Measure(f"growth.n{run.nodes}.cpu_millicores_at_10s", cpu, "millicores"))
        measures.append(Measure(f"growth.n{run.nodes}.memory", memory, "MiB"))
    cpu_base, cpu_k = fit_line(nodes, millicores)
    memory_base, memory_k = fit_line(nodes, mebibytes)
    measures += [
        Measure("growth.fit.cpu_base", cpu_base, "millicores"),
        Measure("growth.fit.cpu_per_node", cpu_k, "millicores/node"),
        Measure("growth.fit.memory_base", memory_base, "MiB"),
        Measure("growth.fit.memory_per_node", memory_k, "MiB/node"),
    ]
    formulas = [
        f"# sizing: cpu = {cpu_base:.0f}m + {cpu_k:.2f}m x nodes (30 pods x 2 containers per node, 10 s)",
        f"# sizing: memory = {memory_base:.0f}Mi + {memory_k:.3f}Mi x nodes (incl. a 15-minute query window)",
    ]
    return measures, formulas

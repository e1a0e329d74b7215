"""Smoke test of the in-process benchmarks at tiny sizes: the output format, never the timings."""

from __future__ import annotations

import math
import re

import pytest

from benchmarks.__main__ import IN_PROCESS, TINY, main, run
from benchmarks.growth import fit_line
from benchmarks.report import Measure, header, percentile

_LINE = re.compile(
    r"^(?P<name>[a-z0-9_.]+) (?P<value>\S+) (?P<unit>\S+) (?P<target>\S+) (?P<ratio>\S+)( ok| MISS)?$"
)


def _measures(lines: list[str]) -> list[re.Match[str]]:
    matches = []
    for line in lines:
        if line.startswith("#"):
            continue
        match = _LINE.match(line)
        assert match is not None, f"not a measure line: {line!r}"
        matches.append(match)
    return matches


def test_in_process_benchmarks_print_one_numeric_line_per_measure() -> None:
    lines: list[str] = []
    run(IN_PROCESS, TINY, lines.append)

    matches = _measures(lines)
    names = [match["name"] for match in matches]
    assert len(names) == len(set(names)), "every measure is printed once"
    assert any(name.endswith(".container_samples_per_s") for name in names)
    assert any(name.endswith(".bytes_per_container") for name in names)
    assert {"growth.fit.cpu_per_node", "growth.fit.memory_per_node"} <= set(names)
    assert any(line.startswith("# sizing: memory = ") for line in lines)
    for match in matches:
        value = float(match["value"])
        assert math.isfinite(value)
        if match["target"] == "-":
            assert match["ratio"] == "-"
        else:
            target = float(match["target"].removeprefix("<=").removeprefix(">="))
            assert float(match["ratio"]) == pytest.approx(value / target, rel=1e-2, abs=1e-3)
            assert match.group(6) in (" ok", " MISS")


def test_header_names_the_machine() -> None:
    lines = header("quick")
    assert all(line.startswith("#") for line in lines)
    assert re.search(r"cores=\d+ load_average=[\d.]+ [\d.]+ [\d.]+ python=3\.", lines[1])


def test_main_refuses_an_unknown_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--quick", "--only", "no-such-benchmark"])
    assert "unknown benchmark" in capsys.readouterr().err


def test_measure_ratio_and_verdict() -> None:
    fast = Measure("x.rate", 60_000, "samples/s", 50_000, "min")
    small = Measure("x.memory", 12, "KiB", 10, "max")
    plain = Measure("x.count", 3, "things")
    assert fast.ratio == pytest.approx(1.2)
    assert fast.line().endswith(" >=50000 1.200 ok")
    assert small.line().endswith(" <=10 1.200 MISS")
    assert plain.line() == "x.count 3 things - -"


def test_fit_line_recovers_base_and_slope() -> None:
    base, slope = fit_line([100, 1000, 5000], [50 + 0.5 * 100, 50 + 0.5 * 1000, 50 + 0.5 * 5000])
    assert base == pytest.approx(50)
    assert slope == pytest.approx(0.5)
    with pytest.raises(ValueError, match="two distinct"):
        fit_line([3, 3], [1, 2])


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile([], 0.99) == 0

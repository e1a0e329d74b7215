"""The liveness heartbeat: fresh while the schedule runs, stale or missing otherwise, as probes see it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from collector.heartbeat import beat, max_age_seconds, problem


def test_fresh_stale_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "run" / "heartbeat"
    assert problem(path, max_age_seconds=30) == f"no heartbeat at {path} yet"
    beat(path)
    assert problem(path, max_age_seconds=30) is None
    stale = problem(path, max_age_seconds=30, now=path.stat().st_mtime + 31)
    assert stale is not None
    assert "31s old (limit 30s)" in stale


def test_limit_is_three_intervals_but_never_under_30s() -> None:
    assert max_age_seconds(2) == 30
    assert max_age_seconds(60) == 180


def _check(path: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "KPULSE_COLLECTOR_HEARTBEAT_FILE": str(path)}
    return subprocess.run(
        [sys.executable, "-m", "collector", "--check-heartbeat"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_probe_command_exit_codes(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat"
    missing = _check(path)
    assert missing.returncode == 1
    assert "no heartbeat" in missing.stderr
    beat(path)
    assert _check(path).returncode == 0
    old = path.stat().st_mtime - 3600
    os.utime(path, (old, old))
    stale = _check(path)
    assert stale.returncode == 1
    assert "the schedule is stuck" in stale.stderr

"""A liveness heartbeat: the agent touches a file after every scheduled run; probes check its age.

The collector serves no HTTP, so Kubernetes' exec probe and compose's healthcheck run
``python -m collector --check-heartbeat``, which fails when the schedule stopped running.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


def beat(path: Path) -> None:
    """Mark the agent alive now (creates the file and its folder when missing)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()


def max_age_seconds(interval_seconds: float) -> float:
    """How stale the heartbeat may get before the agent counts as stuck: three intervals, at least 30 s."""
    return max(3 * interval_seconds, 30.0)


def problem(path: Path, *, max_age_seconds: float, now: float | None = None) -> str | None:
    """Why the heartbeat at ``path`` says the agent is not alive, or ``None`` when it is fresh."""
    try:
        modified = os.stat(path).st_mtime
    except FileNotFoundError:
        return f"no heartbeat at {path} yet"
    age = (time.time() if now is None else now) - modified
    if age > max_age_seconds:
        return f"heartbeat at {path} is {age:.0f}s old (limit {max_age_seconds:.0f}s): the schedule is stuck"
    return None

"""Small test helpers shared across the suite."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout_seconds: float, message: str, *, every_seconds: float = 0.05
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail with ``message`` at the deadline."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} (waited {timeout_seconds:g}s)")
        time.sleep(every_seconds)  # polling interval, not synchronisation: the predicate decides

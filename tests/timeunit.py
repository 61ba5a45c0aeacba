"""The suite's time unit: heartbeats and backoffs run in milliseconds.

``ZW_TEST_TIME_SCALE`` stretches every duration (e.g. ``3`` on a slow or
loaded machine) without touching a test.
"""

from __future__ import annotations

import os

SCALE = float(os.environ.get("ZW_TEST_TIME_SCALE", "1.0"))


def ms(n: float) -> float:
    """``n`` milliseconds of test time, in seconds."""
    return n / 1000.0 * SCALE


def wait_until(predicate, timeout: float = 3.0, interval: float = 0.005) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` (scaled) passes; returns its last value.

    For state that has no event to wait on (server-side counters); bounded,
    so a test that waits for something that never happens fails instead of hanging.
    """
    import time

    deadline = time.monotonic() + timeout * SCALE
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class FakeClock:
    """A clock that only moves when told to (inject as ``clock=`` into pure modules)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

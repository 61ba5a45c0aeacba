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

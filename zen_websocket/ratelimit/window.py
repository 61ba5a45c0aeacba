"""A limit counted in fixed windows: :class:`FixedWindowLimiter`.

Some exchanges do not refill continuously: Binance counts ``REQUEST_WEIGHT``
in fixed one-minute windows (each response's ``rateLimits[].interval`` and
``intervalNum`` say which) and starts every window from zero. A token bucket
with the same numbers is wrong in both directions: it admits a full burst
and then the refill within the same window (twice the limit in the first
minute), and it makes a caller wait for a refill that the exchange grants
all at once when the next window opens.
"""

from __future__ import annotations

import math
import time
from typing import Any

from .bucket import _EPSILON, Clock, RateLimiter
from .costs import CostFunction, simple_cost

__all__ = ["FixedWindowLimiter"]


class FixedWindowLimiter(RateLimiter):
    """At most ``limit`` tokens per fixed window of ``interval`` seconds.

    Windows start at whole multiples of ``interval`` on ``clock``. The default
    clock is ``time.time`` on purpose: the exchange's windows are aligned to
    the wall clock (Binance's minute windows start at whole UTC minutes), and
    a window of our own that straddles two of theirs could put a full limit
    into each half of one of theirs. Inject a fake clock for tests.

    It is a :class:`RateLimiter` (same methods, usable as a
    :class:`MultiRateLimiter` bucket and in the registry); only the refill
    differs: nothing comes back until the next window, then everything does.
    :meth:`charge` debt is forgiven when the window changes, as the exchange
    forgets its count.

    Args:
        limit: tokens allowed per window.
        interval: the window's length in seconds.
        cost: ``cost(message) -> tokens`` (default :func:`simple_cost`).
        clock: seconds, aligned with the exchange's windows.
        name: label shown in :meth:`status` and errors.

    Raises:
        ConfigError: ``limit`` or ``interval`` is not a positive finite number.
    """

    def __init__(
        self,
        limit: float,
        interval: float = 60.0,
        cost: CostFunction = simple_cost,
        *,
        clock: Clock = time.time,
        name: str | None = None,
    ) -> None:
        super().__init__(limit, interval, limit, cost, clock=clock, name=name)
        self._window = self._window_of(self._updated)

    def _window_of(self, now: float) -> float:
        return math.floor(now / self._interval) * self._interval

    def __repr__(self) -> str:
        return f"FixedWindowLimiter(limit={self._capacity:g}, interval={self._interval:g}, name={self.name!r})"

    def _refill_locked(self) -> float:
        assert self._lock.locked()
        now = self._clock()
        window = self._window_of(now)
        if window > self._window:
            self._window = window
            self._tokens = self._capacity
        self._updated = now
        return now

    def _deficit_locked(self, cost: float) -> float:
        """Seconds until ``cost`` tokens are available: 0 now, else until the next window opens."""
        now = self._refill_locked()
        if self._tokens + _EPSILON >= cost:
            return 0.0
        # A hair past the boundary, so the waiter wakes inside the new window.
        return max(self._window + self._interval - now, 0.0) + 1e-6

    def consume(self, message: Any = None) -> bool:
        """Take ``cost(message)`` tokens if the current window still has them.

        Fails while other threads are queued in :meth:`acquire`.

        Raises:
            ValueError: the cost exceeds ``limit`` or is not a number.
        """
        cost = self._cost_of(message)
        with self._lock:
            self._refill_locked()
            if self._tokens + _EPSILON >= cost and not self._waiters:
                self._take_locked(cost)
                return True
            self._rejected += 1
            return False

    def status(self) -> dict[str, Any]:
        """:meth:`RateLimiter.status` plus ``window_start`` and ``resets_in`` (seconds)."""
        status = super().status()
        with self._lock:
            now = self._refill_locked()
            status["window_start"] = self._window
            status["resets_in"] = max(0.0, self._window + self._interval - now)
        return status

    def reset(self) -> None:
        """A full window now; counters zeroed."""
        super().reset()
        with self._lock:
            self._window = self._window_of(self._updated)

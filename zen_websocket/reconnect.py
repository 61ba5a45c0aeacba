"""Reconnection policy as a value, in the manner of urllib3's ``Retry``.

The supervisor keeps a :class:`Backoff`; every failed attempt replaces it with
``policy.increment()``, which knows the next delay and whether to give up::

    policy = Backoff(retry_delay=1.0, max_backoff=30.0, retry_count=3)
    while not policy.exhausted:
        wait(policy.delay())
        if try_connect():
            break
        policy = policy.increment()

No clock, no sleeping, no I/O: the arithmetic is tested on its own.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with a cap, spread by jitter.

    Args:
        retry_delay: delay before the first retry.
        max_backoff: cap on any delay.
        jitter: fraction of random spread: 0.2 spreads each delay over ±20%.
        retry_count: consecutive failures allowed before giving up; None
            retries forever.
        failures: consecutive failed attempts so far.
    """

    retry_delay: float = 1.0
    max_backoff: float = 30.0
    jitter: float = 0.0
    retry_count: int | None = 3
    failures: int = 0

    @property
    def base_delay(self) -> float:
        """``min(retry_delay * 2**failures, max_backoff)``, before jitter."""
        # Cap the exponent: 2**1100 overflows a float after weeks of retrying.
        exponent = min(self.failures, 64)
        return min(self.retry_delay * (2.0**exponent), self.max_backoff)

    def delay(self, random_fn: Callable[[], float] = random.random) -> float:
        """The delay before the next attempt, jitter applied (never negative)."""
        base = self.base_delay
        if not self.jitter:
            return base
        return max(0.0, base * (1.0 + self.jitter * (2.0 * random_fn() - 1.0)))

    @property
    def exhausted(self) -> bool:
        """True once ``retry_count`` consecutive attempts have failed."""
        return self.retry_count is not None and self.failures >= self.retry_count

    def increment(self) -> Backoff:
        """The policy after one more failed attempt."""
        return replace(self, failures=self.failures + 1)

    def reset(self) -> Backoff:
        """The policy after a success: the count starts again from zero."""
        return replace(self, failures=0)

"""Several token buckets behind one limiter: :class:`MultiRateLimiter`.

For exchanges with several limits at once (Deribit: a credit pool, a
matching-engine limit and a subscribe limit): each message is routed to one
or more buckets and takes from all of them or from none.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError
from .bucket import Clock, RateLimiter
from .waiting import wait_in_line

__all__ = ["Route", "MultiRateLimiter"]

Route = Callable[[Any], "str | tuple[str, ...] | list[str]"]


class MultiRateLimiter:
    """Several token buckets behind one limiter, for exchanges with several limits.

    ``route(message)`` names the bucket (or buckets) a message draws from; it
    takes its tokens from all of them or from none. The buckets' locks are
    taken in one global order, so composites that share buckets cannot
    deadlock. Buckets should only be used through their composite: a thread
    waiting in a bucket's own :meth:`RateLimiter.acquire` is not seen here.

    Locking contract: ``_lock`` guards the composite's waiter queue and
    counters; it is taken before any bucket lock, never after.

    Args:
        buckets: bucket name -> :class:`RateLimiter` (each with its own cost
            function).
        route: ``route(message)`` -> a bucket name or a tuple of names; an
            empty tuple means the message is free.
        name: label shown in :meth:`status`.

    Raises:
        ConfigError: ``buckets`` is empty or holds something that is not a
            :class:`RateLimiter`, or ``route`` is not callable.
    """

    def __init__(self, buckets: Mapping[str, RateLimiter], route: Route, *, name: str | None = None) -> None:
        if not isinstance(buckets, Mapping) or not buckets:
            raise ConfigError("buckets", "must be a non-empty mapping of name to RateLimiter")
        for key, bucket in buckets.items():
            if not isinstance(bucket, RateLimiter):
                raise ConfigError(f"buckets.{key}", f"must be a RateLimiter, got {type(bucket).__name__}")
        if not callable(route):
            raise ConfigError("route", "must be a function of the message returning bucket names")
        self.name = name
        self._buckets = dict(buckets)
        self._route = route
        # Deadlines are measured on the buckets' clock (they share one in practice).
        self._clock: Clock = next(iter(self._buckets.values()))._clock if self._buckets else time.monotonic
        self._lock = threading.Lock()
        self._waiters: deque[threading.Condition] = deque()
        self._consumed = 0
        self._rejected = 0
        self._waited = 0.0

    @property
    def buckets(self) -> dict[str, RateLimiter]:
        """The buckets by name (a copy of the mapping)."""
        return dict(self._buckets)

    def __repr__(self) -> str:
        return f"MultiRateLimiter(buckets={sorted(self._buckets)}, name={self.name!r})"

    def route(self, message: Any = None) -> tuple[str, ...]:
        """The bucket names ``message`` draws from.

        Raises:
            KeyError: the route names a bucket that does not exist.
        """
        routed = self._route(message)
        keys = (routed,) if isinstance(routed, str) else tuple(dict.fromkeys(routed))
        for key in keys:
            if key not in self._buckets:
                raise KeyError(f"route sent the message to unknown bucket {key!r}; buckets are {sorted(self._buckets)}")
        return keys

    def _targets(self, message: Any, *, check_capacity: bool = True) -> list[tuple[RateLimiter, float]]:
        # Costs are computed before any lock is taken: cost functions are user code.
        targets = [
            (bucket, bucket._cost_of(message, check_capacity=check_capacity))
            for bucket in (self._buckets[key] for key in self.route(message))
        ]
        targets.sort(key=lambda target: target[0]._order)
        return targets

    @staticmethod
    def _try_take(targets: list[tuple[RateLimiter, float]], *, force: bool = False) -> float:
        """Take from every target or none; the seconds still needed (0 = taken).

        ``force=True`` charges every target at once (see :meth:`charge`).
        """
        locked: list[threading.Lock] = []
        try:
            for bucket, _ in targets:
                bucket._lock.acquire()
                locked.append(bucket._lock)
            if force:
                for bucket, cost in targets:
                    bucket._charge_locked(cost)
                return 0.0
            wait = 0.0
            for bucket, cost in targets:
                wait = max(wait, bucket._deficit_locked(cost))
            if wait == 0.0:
                for bucket, cost in targets:
                    bucket._take_locked(cost)
            return wait
        finally:
            for lock in reversed(locked):
                lock.release()

    def consume(self, message: Any = None) -> bool:
        """Take the message's cost from every routed bucket if all have it now.

        Returns:
            True if taken; False (nothing taken) otherwise, or while threads
            are queued in :meth:`acquire`.

        Raises:
            ValueError: the cost exceeds a routed bucket's burst.
            KeyError: the route names an unknown bucket.
        """
        targets = self._targets(message)
        with self._lock:
            if not self._waiters and self._try_take(targets) == 0.0:
                self._consumed += 1
                return True
            self._rejected += 1
            return False

    def try_acquire(self, message: Any = None) -> bool:
        """Take the message's cost now if every routed bucket has it free; never wait or go into debt.

        Exactly :meth:`consume`; see :meth:`RateLimiter.try_acquire` for why
        pongs use it.
        """
        return self.consume(message)

    def acquire(self, message: Any = None, timeout: float | None = None) -> bool:
        """Wait until every routed bucket has the message's cost, then take it.

        Same semantics as :meth:`RateLimiter.acquire`: FIFO among waiters, the
        head sleeps for the largest deficit, False at once when the refill
        cannot make it within ``timeout``.
        """
        targets = self._targets(message)

        def take() -> float:
            wait = self._try_take(targets)
            if wait == 0.0:
                self._consumed += 1
            return wait

        with self._lock:
            return wait_in_line(self, take, timeout)

    def retry_after(self, message: Any = None) -> float:
        """Seconds until every routed bucket has the message's cost (0 if now)."""
        wait = 0.0
        for bucket, cost in self._targets(message):
            with bucket._lock:
                wait = max(wait, bucket._deficit_locked(cost))
        return wait

    def charge(self, message: Any = None) -> None:
        """Take the message's cost from every routed bucket now, into debt if needed.

        As :meth:`RateLimiter.charge`, no bucket drops below minus its burst.
        """
        targets = self._targets(message, check_capacity=False)
        with self._lock:
            self._try_take(targets, force=True)
            self._consumed += 1

    def status(self) -> dict[str, Any]:
        """A snapshot: ``name``, ``consumed``, ``rejected``, ``waited_seconds``,
        ``waiting``, and ``buckets`` (each bucket's :meth:`RateLimiter.status`)."""
        buckets = {key: bucket.status() for key, bucket in self._buckets.items()}
        with self._lock:
            return {
                "name": self.name,
                "consumed": self._consumed,
                "rejected": self._rejected,
                "waited_seconds": self._waited,
                "waiting": len(self._waiters),
                "buckets": buckets,
            }

    def reset(self) -> None:
        """Refill every bucket and zero the counters; queued waiters re-check at once."""
        for bucket in self._buckets.values():
            bucket.reset()
        with self._lock:
            self._consumed = 0
            self._rejected = 0
            self._waited = 0.0
            if self._waiters:
                self._waiters[0].notify()

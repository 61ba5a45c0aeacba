"""The token bucket: :class:`RateLimiter`.

A bucket holds up to ``burst`` tokens and refills continuously at ``rate``
tokens per ``interval`` seconds. It owns no thread and no timer: the refill
is computed from the injected clock whenever the bucket is looked at, so an
idle limiter costs nothing and tests drive time with a fake clock.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
import timeit
from collections import deque
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from .costs import CostFunction, simple_cost
from .waiting import wait_in_line

__all__ = ["Clock", "RateLimiter"]

Clock = Callable[[], float]

# Tokens are floats; refills like 0.1 s * 10/s land a hair under 1.0. This
# tolerance lets such a take succeed; it can overdraw by at most 1e-9 token.
_EPSILON = 1e-9

# Global lock order for MultiRateLimiter: buckets are always locked in
# creation order, so two composites sharing buckets can never deadlock.
_bucket_order = itertools.count()


def _positive(option: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(option, f"must be a positive number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(option, f"must be a positive finite number, got {value!r}")
    return float(value)


class RateLimiter:
    """A thread-safe token bucket refilled continuously.

    Locking contract: ``_lock`` guards the bucket (``_tokens``, ``_updated``),
    the counters and the waiter queue. The cost function runs outside it.
    Waiting threads queue in FIFO order, each on its own condition over
    ``_lock``; only the head computes its deficit and sleeps exactly that
    long, so nobody busy-polls and a large request is not starved by a stream
    of small ones.

    Args:
        rate: tokens added per ``interval``.
        interval: seconds over which ``rate`` tokens are added.
        burst: bucket capacity (default ``rate``); the bucket starts full.
        cost: ``cost(message) -> tokens`` (default :func:`simple_cost`).
        clock: monotonic clock in seconds. :meth:`acquire` sleeps in real
            time, so it needs a clock that advances by itself.
        name: label shown in :meth:`status` and errors.

    Raises:
        ConfigError: ``rate``, ``interval`` or ``burst`` is not a positive
            finite number (the option is named), ``cost`` is not callable, or
            ``burst`` is below 1 with :func:`simple_cost`.
    """

    def __init__(
        self,
        rate: float,
        interval: float = 1.0,
        burst: float | None = None,
        cost: CostFunction = simple_cost,
        *,
        clock: Clock = time.monotonic,
        name: str | None = None,
    ) -> None:
        rate = _positive("rate", rate)
        interval = _positive("interval", interval)
        capacity = rate if burst is None else _positive("burst", burst)
        if not callable(cost):
            raise ConfigError("cost", f"must be a function of the message, got {cost!r}")
        if cost is simple_cost and capacity < 1:
            raise ConfigError("burst", f"must be at least 1 when every message costs 1, got {capacity!r}")
        self.name = name
        self._rate = rate
        self._interval = interval
        self._capacity = capacity
        self._per_second = rate / interval
        self._cost = cost
        # simple_cost is special-cased on the hot path: a Python call costs
        # about as much as the rest of consume() together.
        self._simple = cost is simple_cost
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = capacity
        self._updated = clock()
        self._waiters: deque[threading.Condition] = deque()
        self._consumed = 0
        self._rejected = 0
        self._waited = 0.0
        self._order = next(_bucket_order)

    # -- read-only configuration -------------------------------------------

    @property
    def rate(self) -> float:
        """Tokens added per ``interval``."""
        return self._rate

    @property
    def interval(self) -> float:
        """Seconds over which ``rate`` tokens are added."""
        return self._interval

    @property
    def capacity(self) -> float:
        """The bucket size (``burst``)."""
        return self._capacity

    burst = capacity

    @property
    def tokens(self) -> float:
        """Tokens available now (negative, down to ``-burst``, while in debt after :meth:`charge`)."""
        with self._lock:
            self._refill_locked()
            return self._tokens

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self._rate:g}, interval={self._interval:g}, burst={self._capacity:g}, name={self.name!r})"

    # -- internals (MultiRateLimiter uses them too) ----------------------------

    def _label(self) -> str:
        return repr(self.name) if self.name else "rate limiter"

    def _cost_of(self, message: Any, *, check_capacity: bool = True) -> float:
        if self._simple:
            return 1
        cost = self._cost(message)
        if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not math.isfinite(cost) or cost < 0:
            raise ValueError(f"cost function of {self._label()} returned {cost!r}; expected a non-negative number")
        if check_capacity and cost > self._capacity + _EPSILON:
            raise ValueError(
                f"a message costing {cost:g} tokens can never pass {self._label()}, whose burst is {self._capacity:g}"
            )
        return cost

    def _refill_locked(self) -> float:
        assert self._lock.locked()
        now = self._clock()
        elapsed = now - self._updated
        # A clock that steps back (an injected one) must not drain the bucket.
        if elapsed > 0:
            tokens = self._tokens + elapsed * self._per_second
            self._tokens = tokens if tokens < self._capacity else self._capacity
            self._updated = now
        return now

    def _deficit_locked(self, cost: float) -> float:
        """Seconds until ``cost`` tokens are available (0 if now); refills first."""
        self._refill_locked()
        deficit = cost - self._tokens
        return deficit / self._per_second if deficit > _EPSILON else 0.0

    def _take_locked(self, cost: float) -> None:
        self._tokens -= cost
        self._consumed += 1

    def _charge_locked(self, cost: float) -> None:
        """Take ``cost`` now, into debt if needed, but never below ``-burst``."""
        self._refill_locked()
        # The floor bounds the debt that sends which cannot wait (pongs) can
        # run up: a server pinging 10,000 times must not push the next user
        # send hours away. Whatever the flood, the bucket is back to zero
        # within one burst's refill time.
        floor = -self._capacity
        if self._tokens - cost < floor:
            cost = self._tokens - floor
        self._take_locked(cost)

    # -- public API --------------------------------------------------------

    def consume(self, message: Any = None) -> bool:
        """Take ``cost(message)`` tokens if they are available now.

        Fails while other threads are queued in :meth:`acquire`, so a caller
        that never waits cannot overtake the ones that do.

        Args:
            message: what is about to be sent (passed to the cost function).

        Returns:
            True if the tokens were taken, False if the message must not be
            sent yet.

        Raises:
            ValueError: the cost exceeds ``burst`` (it could never pass) or
                the cost function returned something that is not a number.
        """
        cost = 1 if self._simple else self._cost_of(message)
        # Hot path: the refill is inlined, no helper calls, no allocation.
        with self._lock:
            now = self._clock()
            tokens = self._tokens
            elapsed = now - self._updated
            if elapsed > 0:
                tokens += elapsed * self._per_second
                if tokens > self._capacity:
                    tokens = self._capacity
                self._updated = now
            if tokens + _EPSILON >= cost and not self._waiters:
                self._tokens = tokens - cost
                self._consumed += 1
                return True
            self._tokens = tokens
            self._rejected += 1
            return False

    def try_acquire(self, message: Any = None) -> bool:
        """Take ``cost(message)`` tokens if they are free now; never wait, never go into debt.

        For frames the library sends from its receive thread, which must not
        block: a pong is skipped when this returns False (RFC 6455 section
        5.5.3 lets an endpoint answer only the most recent ping). Exactly
        :meth:`consume`: tokens promised to threads queued in :meth:`acquire`
        are not free, so a ping flood cannot starve the user's own sends.

        Returns:
            True if the tokens were taken.

        Raises:
            ValueError: as :meth:`consume`.
        """
        return self.consume(message)

    def acquire(self, message: Any = None, timeout: float | None = None) -> bool:
        """Take ``cost(message)`` tokens, waiting for them if necessary.

        Waiters are served in arrival order. The thread at the head sleeps for
        exactly the time the refill needs; the others sleep until it leaves.

        Args:
            message: what is about to be sent.
            timeout: the most seconds to wait; None waits as long as needed;
                0 behaves like :meth:`consume`.

        Returns:
            True once the tokens were taken; False if they cannot be had within
            ``timeout``. When the refill alone proves they cannot arrive in
            time, False is returned at once instead of after the timeout.

        Raises:
            ValueError: the cost exceeds ``burst``.
        """
        cost = self._cost_of(message)

        def take() -> float:
            wait = self._deficit_locked(cost)  # refills first
            if wait == 0.0:
                self._take_locked(cost)
            return wait

        with self._lock:
            return wait_in_line(self, take, timeout)

    def retry_after(self, message: Any = None) -> float:
        """Seconds until ``cost(message)`` tokens will be available (0 if now).

        Ignores threads queued in :meth:`acquire`; it is the refill arithmetic
        only, e.g. for ``RateLimited.retry_after``.
        """
        cost = self._cost_of(message)
        with self._lock:
            return self._deficit_locked(cost)

    def charge(self, message: Any = None) -> None:
        """Take ``cost(message)`` tokens now, going into debt if needed.

        For frames that must go out at once (close frames, a connect's
        weight): they still count, so later sends wait longer and the total
        stays within budget over time. The debt is bounded: the balance never
        drops below ``-burst``, so however many charges pile up, the next
        send waits at most two bursts' refill time.
        """
        cost = self._cost_of(message, check_capacity=False)
        with self._lock:
            self._charge_locked(cost)

    def status(self) -> dict[str, Any]:
        """A snapshot for metrics and debugging.

        Returns:
            ``name``, ``tokens`` (now), ``capacity`` (burst), ``rate``,
            ``interval``, ``consumed`` (messages let through, charges
            included), ``rejected`` (consume failures and acquire timeouts),
            ``waited_seconds`` (total time spent in acquire waits) and
            ``waiting`` (threads queued now).
        """
        with self._lock:
            self._refill_locked()
            return {
                "name": self.name,
                "tokens": self._tokens,
                "capacity": self._capacity,
                "rate": self._rate,
                "interval": self._interval,
                "consumed": self._consumed,
                "rejected": self._rejected,
                "waited_seconds": self._waited,
                "waiting": len(self._waiters),
            }

    def reset(self) -> None:
        """Refill the bucket and zero the counters; queued waiters re-check at once."""
        with self._lock:
            self._tokens = self._capacity
            self._updated = self._clock()
            self._consumed = 0
            self._rejected = 0
            self._waited = 0.0
            if self._waiters:
                self._waiters[0].notify()


# A timing hook, not logic: mutating its numbers changes nothing a test can see.
def _bench_consume(n: int = 1_000_000) -> float:  # pragma: no mutate block
    """Seconds per uncontended :meth:`RateLimiter.consume` call (best of 5 runs of ``n``).

    A benchmark hook (``zen_websocket.rate_limiter._bench_consume``); tests
    never time anything.
    """
    limiter = RateLimiter(1e12, burst=1e12)  # never runs dry: measures the success path
    timer = timeit.Timer(limiter.consume)
    return min(timer.repeat(repeat=5, number=n)) / n

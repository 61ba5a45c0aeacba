"""Token-bucket rate limiting, exchange cost functions, presets and a named registry.

A :class:`RateLimiter` holds up to ``burst`` tokens and refills continuously at
``rate`` tokens per ``interval`` seconds. Each message costs ``cost(message)``
tokens. The limiter owns no thread and no timer: the refill is computed from
the injected clock whenever the bucket is looked at, so an idle limiter costs
nothing and tests drive time with a fake clock.

Exchanges with several limits get a :class:`MultiRateLimiter`, which routes
each message to one or more buckets and takes from all of them or none.

Example::

    import zen_websocket as zw

    limiter = zw.rate_limiter.deribit_preset()
    client = zw.connect(url, rate_limiter=limiter)       # sends wait for credits

    # The named registry of the Elixir original:
    zw.rate_limiter.init("orders", rate=10, interval=1.0)
    if zw.rate_limiter.consume("orders"):
        ...

Every exchange number lives in the constants below, each citing its source
(the exchange doc summarised in PROTOCOLS.md), so they are easy to update.
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
import timeit
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from .errors import ConfigError

__all__ = [
    "Clock",
    "CostFunction",
    "Route",
    "simple_cost",
    "deribit_cost",
    "binance_cost",
    "is_matching_engine",
    "is_deribit_subscription",
    "RateLimiter",
    "MultiRateLimiter",
    "deribit_preset",
    "binance_stream_preset",
    "binance_api_preset",
    "init",
    "register",
    "get",
    "consume",
    "acquire",
    "retry_after",
    "status",
    "shutdown",
    "names",
    "DERIBIT_REQUEST_CREDITS",
    "DERIBIT_CREDIT_CAPACITY",
    "DERIBIT_CREDIT_REFILL_PER_SECOND",
    "DERIBIT_MATCHING_RATE",
    "DERIBIT_MATCHING_BURST",
    "DERIBIT_SUBSCRIBE_RATE",
    "DERIBIT_MATCHING_ENGINE_METHODS",
    "BINANCE_STREAM_MESSAGES_PER_SECOND",
    "BINANCE_REQUEST_WEIGHT_LIMIT",
    "BINANCE_REQUEST_WEIGHT_INTERVAL",
    "BINANCE_CONNECT_WEIGHT",
    "BINANCE_WEIGHTS",
]

Clock = Callable[[], float]
CostFunction = Callable[[Any], float]
Route = Callable[[Any], "str | tuple[str, ...] | list[str]"]

# Tokens are floats; refills like 0.1 s * 10/s land a hair under 1.0. This
# tolerance lets such a take succeed; it can overdraw by at most 1e-9 token.
_EPSILON = 1e-9

# ---------------------------------------------------------------------------
# Exchange numbers
# ---------------------------------------------------------------------------

# Deribit API v2, "Rate limits" (credit system, per sub-account), as in
# PROTOCOLS.md: a non-matching-engine request costs 500 credits, the pool
# holds 50,000 and refills 10,000 per second (20 requests/s, bursts of 100).
DERIBIT_REQUEST_CREDITS = 500
DERIBIT_CREDIT_CAPACITY = 50_000
DERIBIT_CREDIT_REFILL_PER_SECOND = 10_000
# Deribit API v2, "Rate limits": matching-engine requests have a separate,
# tiered limit, "20-30 requests/s with bursts of 50-100 on the higher tiers"
# (PROTOCOLS.md). The default is the lowest published figure, so an account
# on any tier stays inside its limit; pass your tier's numbers to the preset.
DERIBIT_MATCHING_RATE = 20.0
DERIBIT_MATCHING_BURST = 50.0
# Deribit API v2: "Subscribe requests have their own low limit (about 3 per
# second)" (PROTOCOLS.md).
DERIBIT_SUBSCRIBE_RATE = 3.0

# Deribit API v2, "Rate limits": the requests handled by the matching engine
# (order entry and cancellation); every other request is non-matching. All
# ``private/cancel_all*`` variants are matched by prefix below.
DERIBIT_MATCHING_ENGINE_METHODS = frozenset(
    {
        "private/buy",
        "private/sell",
        "private/edit",
        "private/edit_by_label",
        "private/cancel",
        "private/cancel_all",
        "private/cancel_by_label",
        "private/cancel_quotes",
        "private/close_position",
        "private/mass_quote",
    }
)
_DERIBIT_ME_PREFIX = "private/cancel_all"
_DERIBIT_SUBSCRIPTION_METHODS = frozenset(
    {"public/subscribe", "private/subscribe", "public/unsubscribe", "private/unsubscribe"}
)

# Binance spot "WebSocket Streams", WebSocket limits (PROTOCOLS.md): 5
# incoming messages per second per connection, pings, pongs and control
# messages included; going over disconnects.
BINANCE_STREAM_MESSAGES_PER_SECOND = 5
# Binance "WebSocket API", rate limits (PROTOCOLS.md): REQUEST_WEIGHT is
# limited per IP, 6000 per minute; opening a connection costs 2.
BINANCE_REQUEST_WEIGHT_LIMIT = 6000
BINANCE_REQUEST_WEIGHT_INTERVAL = 60.0
BINANCE_CONNECT_WEIGHT = 2

# Binance spot "WebSocket API" request weights. ping, time, exchangeInfo,
# depth and order.place are in PROTOCOLS.md; the others are from the same
# Binance doc (web-socket-api.md, each method's "Weight" line) and mirror the
# REST endpoints' weights. Methods not listed cost 1. Parameter-dependent
# weights (depth, ticker.*, openOrders.status) are computed in binance_cost.
BINANCE_WEIGHTS: Mapping[str, int] = {
    "ping": 1,
    "time": 1,
    "exchangeInfo": 20,
    "trades.recent": 25,
    "trades.historical": 25,
    "trades.aggregate": 4,
    "klines": 2,
    "uiKlines": 2,
    "avgPrice": 2,
    "order.place": 1,
    "order.test": 1,
    "order.cancel": 1,
    "order.cancelReplace": 1,
    "order.status": 4,
    "openOrders.cancelAll": 1,
    "allOrders": 20,
    "myTrades": 20,
    "account.status": 20,
    "account.rateLimits.orders": 40,
    "session.logon": 2,
    "session.status": 2,
    "session.logout": 2,
    # Stream control on the market-data streams (SUBSCRIBE etc.) has no weight;
    # each counts as one of the 5 messages per second.
    "SUBSCRIBE": 1,
    "UNSUBSCRIBE": 1,
    "LIST_SUBSCRIPTIONS": 1,
    "SET_PROPERTY": 1,
    "GET_PROPERTY": 1,
}
# Binance "WebSocket API", depth: weight by ``limit`` (default 100, max 5000).
_BINANCE_DEPTH_WEIGHTS = ((100, 5), (500, 25), (1000, 50), (5000, 250))


# ---------------------------------------------------------------------------
# Cost functions
# ---------------------------------------------------------------------------


def _method_and_params(message: Any) -> tuple[str | None, Any]:
    """The ``method`` and ``params`` of a request given as dict, JSON text or bytes."""
    if isinstance(message, (bytes, bytearray)):
        try:
            message = bytes(message).decode("utf-8")
        except UnicodeDecodeError:
            return None, None
    if isinstance(message, str):
        # Cheap pre-check before decoding: text without "method" is no request.
        if '"method"' not in message:
            return None, None
        try:
            message = json.loads(message)
        except ValueError:
            return None, None
    if isinstance(message, dict):
        method = message.get("method")
        return (method if isinstance(method, str) else None), message.get("params")
    return None, None


def simple_cost(message: Any = None) -> int:
    """Every message costs one token.

    Args:
        message: ignored.

    Returns:
        1.
    """
    return 1


def is_matching_engine(message: Any = None) -> bool:
    """True if ``message`` is a Deribit request handled by the matching engine.

    Args:
        message: a JSON-RPC request as a dict, JSON str or bytes (or None).

    Returns:
        True for ``private/buy``, ``private/sell``, ``private/edit*``,
        ``private/cancel*``, ``private/close_position``, ``private/mass_quote``.
    """
    method, _ = _method_and_params(message)
    if method is None:
        return False
    return method in DERIBIT_MATCHING_ENGINE_METHODS or method.startswith(_DERIBIT_ME_PREFIX)


def is_deribit_subscription(message: Any = None) -> bool:
    """True if ``message`` is a Deribit (un)subscribe request.

    Unsubscribe requests are counted with subscribes: Deribit does not say they
    are exempt from the subscribe limit, so the cautious reading is that they
    are not.
    """
    method, _ = _method_and_params(message)
    return method in _DERIBIT_SUBSCRIPTION_METHODS


def deribit_cost(message: Any = None) -> int:
    """Deribit credits for ``message`` in the non-matching-engine pool.

    Every request costs :data:`DERIBIT_REQUEST_CREDITS` (500). Matching-engine
    requests are limited by their own bucket in :func:`deribit_preset`, which
    never asks this function about them; used alone, this function charges
    them 500 too, so a single credit bucket stays on the safe side rather than
    letting orders through unmetered.

    Args:
        message: the request (dict, JSON str, bytes) or None.

    Returns:
        500.
    """
    return DERIBIT_REQUEST_CREDITS


def _binance_depth_weight(params: Any) -> int:
    limit = params.get("limit", 100) if isinstance(params, dict) else 100
    if isinstance(limit, str):
        try:
            limit = int(limit)
        except ValueError:
            limit = 100
    if isinstance(limit, bool) or not isinstance(limit, (int, float)):
        limit = 100
    for upper, weight in _BINANCE_DEPTH_WEIGHTS:
        if limit <= upper:
            return weight
    return _BINANCE_DEPTH_WEIGHTS[-1][1]


def binance_cost(message: Any = None) -> int:
    """Binance WebSocket API request weight of ``message``.

    Args:
        message: the request (dict, JSON str, bytes) or None.

    Returns:
        The weight from :data:`BINANCE_WEIGHTS`; ``depth`` by ``params.limit``
        (5/25/50/250 up to 100/500/1000/5000); ``ticker.price`` and
        ``ticker.book`` 2 for one symbol, 4 otherwise; ``ticker.24hr`` 2 for
        one to 20 symbols, 40 up to 100, 80 for more or all;
        ``openOrders.status`` 6 with a symbol, 80 without; 1 for anything
        else, stream control (``SUBSCRIBE``...) and None.
    """
    method, params = _method_and_params(message)
    if method is None:
        return 1
    has_params = isinstance(params, dict)
    if method == "depth":
        return _binance_depth_weight(params)
    if method in ("ticker.price", "ticker.book"):
        # Binance "WebSocket API", symbol price/order book ticker: 2 / 4.
        return 2 if has_params and "symbol" in params else 4
    if method == "ticker.24hr":
        # Binance "WebSocket API", 24hr ticker: by number of symbols.
        if has_params and "symbol" in params:
            return 2
        symbols = params.get("symbols") if has_params else None
        if isinstance(symbols, list):
            return 2 if len(symbols) <= 20 else 40 if len(symbols) <= 100 else 80
        return 80
    if method == "openOrders.status":
        # Binance "WebSocket API", current open orders: 6 / 80 for all symbols.
        return 6 if has_params and "symbol" in params else 80
    return BINANCE_WEIGHTS.get(method, 1)


# ---------------------------------------------------------------------------
# Token bucket
# ---------------------------------------------------------------------------


def _positive(option: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(option, f"must be a positive number, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(option, f"must be a positive finite number, got {value!r}")
    return float(value)


# Global lock order for MultiRateLimiter: buckets are always locked in
# creation order, so two composites sharing buckets can never deadlock.
_bucket_order = itertools.count()


def _wait_in_line(owner: Any, take: Callable[[], float], timeout: float | None) -> bool:
    """The FIFO wait behind ``RateLimiter.acquire`` and ``MultiRateLimiter.acquire``.

    The caller holds ``owner._lock``. ``take()`` takes the tokens and returns
    0.0, or returns the seconds the refill still needs. Waiters are served in
    arrival order: the head sleeps for exactly that time, the others until
    the head leaves. Returns False at once when the refill cannot make it
    within ``timeout``.
    """
    assert owner._lock.locked()
    if not owner._waiters and take() == 0.0:
        return True
    if timeout is not None and timeout <= 0:
        owner._rejected += 1
        return False
    clock = owner._clock
    started = now = clock()
    deadline = None if timeout is None else now + timeout
    ticket = threading.Condition(owner._lock)
    owner._waiters.append(ticket)
    try:
        while True:
            now = clock()
            wait: float | None
            if owner._waiters[0] is ticket:
                wait = take()
                if wait == 0.0:
                    return True
                if deadline is not None and now + wait > deadline:
                    owner._rejected += 1
                    return False
            elif deadline is None:
                wait = None  # sleep until the head leaves
            else:
                wait = deadline - now
                if wait <= 0:
                    owner._rejected += 1
                    return False
            ticket.wait(wait)
    finally:
        was_head = owner._waiters[0] is ticket
        owner._waiters.remove(ticket)
        if was_head and owner._waiters:
            owner._waiters[0].notify()
        owner._waited += max(0.0, now - started)


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
        """Tokens available now (negative while in debt after :meth:`charge`)."""
        with self._lock:
            self._refill_locked()
            return self._tokens

    def __repr__(self) -> str:
        return f"RateLimiter(rate={self._rate:g}, interval={self._interval:g}, burst={self._capacity:g}, name={self.name!r})"

    # -- internals ---------------------------------------------------------

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
            return _wait_in_line(self, take, timeout)

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

        For frames that must go out at once (pongs, close frames): they still
        count, so later sends wait longer, and the total stays within budget
        over time.
        """
        cost = self._cost_of(message, check_capacity=False)
        with self._lock:
            self._refill_locked()
            self._take_locked(cost)

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


# ---------------------------------------------------------------------------
# Several buckets
# ---------------------------------------------------------------------------


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
        """Take from every target or none; the seconds still needed (0 = taken)."""
        locked: list[threading.Lock] = []
        try:
            for bucket, _ in targets:
                bucket._lock.acquire()
                locked.append(bucket._lock)
            wait = 0.0
            for bucket, cost in targets:
                if force:
                    bucket._refill_locked()
                else:
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
            return _wait_in_line(self, take, timeout)

    def retry_after(self, message: Any = None) -> float:
        """Seconds until every routed bucket has the message's cost (0 if now)."""
        wait = 0.0
        for bucket, cost in self._targets(message):
            with bucket._lock:
                wait = max(wait, bucket._deficit_locked(cost))
        return wait

    def charge(self, message: Any = None) -> None:
        """Take the message's cost from every routed bucket now, into debt if needed."""
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
        """Refill every bucket and zero the counters."""
        for bucket in self._buckets.values():
            bucket.reset()
        with self._lock:
            self._consumed = 0
            self._rejected = 0
            self._waited = 0.0
            if self._waiters:
                self._waiters[0].notify()


# ---------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------


def _deribit_route(message: Any) -> str | tuple[str, ...]:
    if is_matching_engine(message):
        return "matching"
    if is_deribit_subscription(message):
        # A subscribe is also an ordinary request: it spends credits too.
        return ("credits", "subscribe")
    return "credits"


def deribit_preset(
    *,
    matching_rate: float = DERIBIT_MATCHING_RATE,
    matching_burst: float = DERIBIT_MATCHING_BURST,
    subscribe_rate: float = DERIBIT_SUBSCRIBE_RATE,
    clock: Clock = time.monotonic,
    name: str = "deribit",
) -> MultiRateLimiter:
    """A fresh limiter for one Deribit sub-account.

    Buckets: ``"credits"`` (non-matching-engine requests, 500 credits each,
    50,000 held, 10,000 refilled per second), ``"matching"`` (order entry and
    cancels, ``matching_rate`` per second with bursts of ``matching_burst``;
    defaults are the lowest tier) and ``"subscribe"`` (``subscribe_rate`` per
    second, burst the same). Share one instance between the connections of a
    sub-account: Deribit counts per sub-account, not per connection.

    Args:
        matching_rate: your tier's matching-engine requests per second.
        matching_burst: your tier's matching-engine burst.
        subscribe_rate: (un)subscribe requests per second.
        clock: monotonic clock (for tests).
        name: label in :meth:`MultiRateLimiter.status`.
    """
    buckets = {
        "credits": RateLimiter(
            DERIBIT_CREDIT_REFILL_PER_SECOND,
            1.0,
            DERIBIT_CREDIT_CAPACITY,
            deribit_cost,
            clock=clock,
            name=f"{name}.credits",
        ),
        "matching": RateLimiter(matching_rate, 1.0, matching_burst, clock=clock, name=f"{name}.matching"),
        "subscribe": RateLimiter(subscribe_rate, 1.0, None, clock=clock, name=f"{name}.subscribe"),
    }
    return MultiRateLimiter(buckets, _deribit_route, name=name)


def binance_stream_preset(*, clock: Clock = time.monotonic, name: str = "binance_stream") -> RateLimiter:
    """A fresh limiter for one Binance spot market-data stream connection.

    5 messages per second, burst 5: every frame the client sends counts,
    pings, pongs and SUBSCRIBE/UNSUBSCRIBE included, so pongs should be sent
    with :meth:`RateLimiter.charge`. One instance per connection: the limit is
    per connection.
    """
    return RateLimiter(
        BINANCE_STREAM_MESSAGES_PER_SECOND,
        1.0,
        BINANCE_STREAM_MESSAGES_PER_SECOND,
        simple_cost,
        clock=clock,
        name=name,
    )


def binance_api_preset(*, clock: Clock = time.monotonic, name: str = "binance_api") -> RateLimiter:
    """A fresh limiter for the Binance WebSocket API ``REQUEST_WEIGHT`` (6000 per 60 s).

    Costs come from :func:`binance_cost`. The limit is per IP: share one
    instance between every connection from the same address, and
    :meth:`RateLimiter.charge` :data:`BINANCE_CONNECT_WEIGHT` for each connect.
    """
    return RateLimiter(
        BINANCE_REQUEST_WEIGHT_LIMIT,
        BINANCE_REQUEST_WEIGHT_INTERVAL,
        BINANCE_REQUEST_WEIGHT_LIMIT,
        binance_cost,
        clock=clock,
        name=name,
    )


# ---------------------------------------------------------------------------
# Named registry (the Elixir original's API)
# ---------------------------------------------------------------------------

_registry_lock = threading.Lock()  # guards _registry
_registry: dict[str, RateLimiter | MultiRateLimiter] = {}


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError("name", f"must be a non-empty str, got {name!r}")
    return name


def register(name: str, limiter: RateLimiter | MultiRateLimiter, *, replace: bool = False) -> None:
    """Register an existing limiter (e.g. a preset) under ``name``.

    Raises:
        ConfigError: ``name`` is taken and ``replace`` is false, or
            ``limiter`` is not a limiter.
    """
    _check_name(name)
    if not isinstance(limiter, (RateLimiter, MultiRateLimiter)):
        raise ConfigError("limiter", f"must be a RateLimiter or MultiRateLimiter, got {type(limiter).__name__}")
    with _registry_lock:
        if name in _registry and not replace:
            raise ConfigError(
                "name", f"a rate limiter named {name!r} already exists; shutdown({name!r}) it or pass replace=True"
            )
        _registry[name] = limiter


def init(
    name: str,
    rate: float,
    interval: float = 1.0,
    burst: float | None = None,
    cost: CostFunction = simple_cost,
    *,
    replace: bool = False,
    clock: Clock = time.monotonic,
) -> RateLimiter:
    """Create a :class:`RateLimiter` and register it under ``name``.

    An existing name is an error unless ``replace=True``: two parts of a
    program silently sharing (or stealing) one budget is the bug this
    prevents.

    Returns:
        The new limiter.

    Raises:
        ConfigError: invalid numbers (the option is named), or the name is taken.
    """
    limiter = RateLimiter(rate, interval, burst, cost, clock=clock, name=_check_name(name))
    register(name, limiter, replace=replace)
    return limiter


def get(name: str) -> RateLimiter | MultiRateLimiter:
    """The limiter registered under ``name``.

    Raises:
        KeyError: no limiter has that name.
    """
    with _registry_lock:
        try:
            return _registry[name]
        except KeyError:
            raise KeyError(
                f"no rate limiter named {name!r}; create it with rate_limiter.init({name!r}, rate=...)"
            ) from None


def consume(name: str, message: Any = None) -> bool:
    """:meth:`RateLimiter.consume` on the limiter named ``name``."""
    return get(name).consume(message)


def acquire(name: str, message: Any = None, timeout: float | None = None) -> bool:
    """:meth:`RateLimiter.acquire` on the limiter named ``name``."""
    return get(name).acquire(message, timeout)


def retry_after(name: str, message: Any = None) -> float:
    """:meth:`RateLimiter.retry_after` on the limiter named ``name``."""
    return get(name).retry_after(message)


def status(name: str) -> dict[str, Any]:
    """:meth:`RateLimiter.status` of the limiter named ``name``."""
    return get(name).status()


def shutdown(name: str) -> bool:
    """Forget the limiter named ``name``; True if it existed.

    Holders of the object can keep using it; only the name is released.
    """
    with _registry_lock:
        return _registry.pop(name, None) is not None


def names() -> list[str]:
    """Names of the registered limiters, in registration order."""
    with _registry_lock:
        return list(_registry)


# ---------------------------------------------------------------------------
# Benchmark hook (scripts/bench.py); tests never time anything.
# ---------------------------------------------------------------------------


def _bench_consume(n: int = 1_000_000) -> float:
    """Seconds per uncontended :meth:`RateLimiter.consume` call (best of 5 runs of ``n``)."""
    limiter = RateLimiter(1e12, burst=1e12)  # never runs dry: measures the success path
    timer = timeit.Timer(limiter.consume)
    return min(timer.repeat(repeat=5, number=n)) / n

"""Ready-made limiters built from the exchanges' published limits.

Each preset returns a fresh limiter; share one instance where the exchange
counts across connections (per sub-account, per IP), as each docstring says.
The numbers come from :mod:`.exchanges`.
"""

from __future__ import annotations

import time
from typing import Any

from .bucket import Clock, RateLimiter
from .costs import binance_cost, deribit_cost, is_deribit_subscription, is_matching_engine, simple_cost
from .exchanges import (
    BINANCE_REQUEST_WEIGHT_INTERVAL,
    BINANCE_REQUEST_WEIGHT_LIMIT,
    BINANCE_STREAM_MESSAGES_PER_SECOND,
    DERIBIT_CREDIT_CAPACITY,
    DERIBIT_CREDIT_REFILL_PER_SECOND,
    DERIBIT_MATCHING_BURST,
    DERIBIT_MATCHING_RATE,
    DERIBIT_SUBSCRIBE_RATE,
)
from .multi import MultiRateLimiter

__all__ = ["deribit_preset", "binance_stream_preset", "binance_api_preset"]


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
    pings, pongs and SUBSCRIBE/UNSUBSCRIBE included, so pongs should go
    through :meth:`RateLimiter.try_acquire` (skipped when no token is free)
    or :meth:`RateLimiter.charge` (bounded debt). One instance per
    connection: the limit is per connection.
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
    :meth:`RateLimiter.charge` ``BINANCE_CONNECT_WEIGHT`` for each connect.
    """
    return RateLimiter(
        BINANCE_REQUEST_WEIGHT_LIMIT,
        BINANCE_REQUEST_WEIGHT_INTERVAL,
        BINANCE_REQUEST_WEIGHT_LIMIT,
        binance_cost,
        clock=clock,
        name=name,
    )

"""Ready-made limiters built from the exchanges' published limits.

Each preset returns a fresh limiter; share one instance where the exchange
counts across connections (per sub-account, per IP), as each docstring says.
The numbers come from :mod:`.exchanges`.
"""

from __future__ import annotations

import time
from typing import Any

from ..errors import ConfigError
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
    DERIBIT_MATCHING_TIERS,
    DERIBIT_SUBSCRIBE_RATE,
)
from .multi import MultiRateLimiter
from .window import FixedWindowLimiter

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
    tier: int | None = None,
    matching_rate: float | None = None,
    matching_burst: float | None = None,
    subscribe_rate: float = DERIBIT_SUBSCRIBE_RATE,
    clock: Clock = time.monotonic,
    name: str = "deribit",
) -> MultiRateLimiter:
    """A fresh limiter for one Deribit sub-account.

    Buckets: ``"credits"`` (non-matching-engine requests, 500 credits each,
    50,000 held, 10,000 refilled per second), ``"matching"`` (order entry and
    cancels, by account tier: Tier 1 30/s burst 100, Tier 2 20/s burst 50;
    without a tier the lowest published figure, 2/s burst 2) and
    ``"subscribe"`` (``subscribe_rate`` per second, burst the same). Share one
    instance between the connections of a sub-account: Deribit counts per
    sub-account, not per connection.

    Args:
        tier: your account's matching-engine tier (1 or 2, the tiers with
            published numbers); None for the lowest limit, safe on any tier.
        matching_rate: matching-engine requests per second (overrides the tier's).
        matching_burst: matching-engine burst (overrides the tier's).
        subscribe_rate: (un)subscribe requests per second.
        clock: monotonic clock (for tests).
        name: label in :meth:`MultiRateLimiter.status`.

    Raises:
        ConfigError: an unknown ``tier`` (option ``tier``).
    """
    if tier is None:
        rate, burst = DERIBIT_MATCHING_RATE, DERIBIT_MATCHING_BURST
    elif tier in DERIBIT_MATCHING_TIERS and not isinstance(tier, bool):
        rate, burst = DERIBIT_MATCHING_TIERS[tier]
    else:
        known = ", ".join(str(t) for t in DERIBIT_MATCHING_TIERS)
        raise ConfigError("tier", f"Deribit publishes matching-engine limits for tiers {known}, got {tier!r}")
    matching_rate = rate if matching_rate is None else matching_rate
    matching_burst = burst if matching_burst is None else matching_burst
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
    """A fresh limiter for one Binance spot market-data stream connection: at most 5 messages in any second.

    Every frame the client sends counts, pings, pongs and
    SUBSCRIBE/UNSUBSCRIBE included (PROTOCOLS.md), so pongs should go
    through :meth:`RateLimiter.try_acquire` (skipped when no token is free)
    or :meth:`RateLimiter.charge` (bounded debt). A bucket lets through its
    burst plus its refill in any one second, so 5 per second with a burst
    of 5 would admit 9: this one refills 4 per second with a burst of 1
    (at most 5 in any one-second span, whether Binance counts in sliding or
    fixed seconds). One instance per connection: the limit is per connection.
    """
    burst = 1
    return RateLimiter(
        BINANCE_STREAM_MESSAGES_PER_SECOND - burst,
        1.0,
        burst,
        simple_cost,
        clock=clock,
        name=name,
    )


def binance_api_preset(*, clock: Clock = time.time, name: str = "binance_api") -> FixedWindowLimiter:
    """A fresh limiter for the Binance WebSocket API ``REQUEST_WEIGHT``: 6000 per fixed minute.

    Binance counts the weight in fixed 1-minute windows aligned to the wall
    clock (PROTOCOLS.md), so this is a :class:`FixedWindowLimiter` on
    ``time.time``: at most 6000 weight in any one of Binance's minutes (a
    token bucket with the same numbers admitted 12,000 in the first minute).
    Costs come from :func:`binance_cost`. The limit is per IP: share one
    instance between every connection from the same address, and
    :meth:`RateLimiter.charge` ``BINANCE_CONNECT_WEIGHT`` for each connect.
    """
    return FixedWindowLimiter(
        BINANCE_REQUEST_WEIGHT_LIMIT,
        BINANCE_REQUEST_WEIGHT_INTERVAL,
        binance_cost,
        clock=clock,
        name=name,
    )

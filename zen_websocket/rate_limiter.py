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

This module is the public face; the code lives in :mod:`zen_websocket.ratelimit`,
one module per concern (bucket, multi, costs, exchanges, presets, registry).
Every exchange number is in :mod:`zen_websocket.ratelimit.exchanges`, each
citing its source.
"""

from __future__ import annotations

from .ratelimit import (
    BINANCE_CONNECT_WEIGHT,
    BINANCE_REQUEST_WEIGHT_INTERVAL,
    BINANCE_REQUEST_WEIGHT_LIMIT,
    BINANCE_STREAM_MESSAGES_PER_SECOND,
    BINANCE_WEIGHTS,
    DERIBIT_CREDIT_CAPACITY,
    DERIBIT_CREDIT_REFILL_PER_SECOND,
    DERIBIT_MATCHING_BURST,
    DERIBIT_MATCHING_ENGINE_METHODS,
    DERIBIT_MATCHING_RATE,
    DERIBIT_REQUEST_CREDITS,
    DERIBIT_SUBSCRIBE_RATE,
    Clock,
    CostFunction,
    MultiRateLimiter,
    RateLimiter,
    Route,
    acquire,
    binance_api_preset,
    binance_cost,
    binance_stream_preset,
    consume,
    deribit_cost,
    deribit_preset,
    get,
    init,
    is_deribit_subscription,
    is_matching_engine,
    names,
    register,
    retry_after,
    shutdown,
    simple_cost,
    status,
)
from .ratelimit.bucket import _bench_consume  # noqa: F401  (scripts/bench.py's hook, kept where it was)

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

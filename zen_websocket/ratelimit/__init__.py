"""Rate limiting, one module per concern.

- :mod:`.bucket`: :class:`RateLimiter`, the token bucket.
- :mod:`.multi`: :class:`MultiRateLimiter`, several buckets taken together.
- :mod:`.window`: :class:`FixedWindowLimiter`, a limit counted in fixed windows (Binance weight).
- :mod:`.costs`: cost functions (``simple_cost``, ``deribit_cost``, ``binance_cost``).
- :mod:`.exchanges`: every exchange number, each citing its source.
- :mod:`.presets`: limiters built from those numbers.
- :mod:`.registry`: the named registry (``init``, ``consume``, ``shutdown``...).
- :mod:`.waiting`: the FIFO wait both limiters share.

Users import all of it from :mod:`zen_websocket.rate_limiter` (``zw.rate_limiter``).
"""

from __future__ import annotations

from .bucket import Clock, RateLimiter
from .costs import CostFunction, binance_cost, deribit_cost, is_deribit_subscription, is_matching_engine, simple_cost
from .exchanges import (
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
)
from .multi import MultiRateLimiter, Route
from .presets import binance_api_preset, binance_stream_preset, deribit_preset
from .registry import acquire, consume, get, init, names, register, retry_after, shutdown, status
from .window import FixedWindowLimiter

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
    "FixedWindowLimiter",
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

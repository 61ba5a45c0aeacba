"""Cost functions: how many tokens a message takes from a bucket.

A cost function is ``cost(message) -> number``; ``message`` is what the
client is about to send (a dict, JSON text or bytes) or None for frames
without a body (pings, pongs). The exchange numbers come from
:mod:`.exchanges`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .exchanges import (
    BINANCE_DEPTH_WEIGHTS,
    BINANCE_EXECUTION_RULES_WEIGHT_CAP,
    BINANCE_EXECUTION_RULES_WEIGHT_PER_SYMBOL,
    BINANCE_ORDER_TEST_COMMISSION_WEIGHT,
    BINANCE_ORDER_TEST_WEIGHT,
    BINANCE_TICKER_WEIGHT_CAP,
    BINANCE_TICKER_WEIGHT_PER_SYMBOL,
    BINANCE_WEIGHTS,
    DERIBIT_MATCHING_ENGINE_METHODS,
    DERIBIT_MATCHING_ENGINE_PREFIX,
    DERIBIT_REQUEST_CREDITS,
    DERIBIT_SUBSCRIPTION_METHODS,
)

__all__ = [
    "CostFunction",
    "simple_cost",
    "deribit_cost",
    "binance_cost",
    "is_matching_engine",
    "is_deribit_subscription",
]

CostFunction = Callable[[Any], float]


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
    return method in DERIBIT_MATCHING_ENGINE_METHODS or method.startswith(DERIBIT_MATCHING_ENGINE_PREFIX)


def is_deribit_subscription(message: Any = None) -> bool:
    """True if ``message`` is a Deribit (un)subscribe request.

    Unsubscribe requests are counted with subscribes: Deribit does not say they
    are exempt from the subscribe limit, so the cautious reading is that they
    are not.
    """
    method, _ = _method_and_params(message)
    return method in DERIBIT_SUBSCRIPTION_METHODS


def deribit_cost(message: Any = None) -> int:
    """Deribit credits for ``message`` in the non-matching-engine pool.

    Every request costs :data:`DERIBIT_REQUEST_CREDITS` (500). Matching-engine
    requests are limited by their own bucket in ``deribit_preset``, which
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
    for upper, weight in BINANCE_DEPTH_WEIGHTS:
        if limit <= upper:
            return weight
    return BINANCE_DEPTH_WEIGHTS[-1][1]


def _symbol_count(params: Any) -> int | None:
    """1 for a ``symbol``, the length of a ``symbols`` list, None for neither (all symbols)."""
    if not isinstance(params, dict):
        return None
    if params.get("symbol") is not None:
        return 1
    symbols = params.get("symbols")
    if isinstance(symbols, list):
        return len(symbols)
    if isinstance(symbols, str):
        # REST-style '["BTCUSDT","ETHUSDT"]' passed through as text.
        return max(1, symbols.count(",") + 1)
    return None


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
        else, stream control (``SUBSCRIBE``...) and None. ``ticker`` 4 per
        symbol up to 50 symbols, 200 above; ``order.test`` 1, or 20 with
        ``computeCommissionRates``; ``executionRules`` 2 per symbol up to
        40, 40 for all symbols; ``myFilters`` 40, ``allOrderLists`` 20.
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
    if method == "ticker":
        # Binance "WebSocket API", rolling window price change statistics.
        count = _symbol_count(params)
        if count is None:
            return BINANCE_TICKER_WEIGHT_CAP  # no symbol is refused; never undercount
        return min(BINANCE_TICKER_WEIGHT_PER_SYMBOL * count, BINANCE_TICKER_WEIGHT_CAP)
    if method == "order.test":
        # Binance "WebSocket API", test new order: 20 when it computes commissions.
        if has_params and params.get("computeCommissionRates") in (True, "true", "TRUE", "True"):
            return BINANCE_ORDER_TEST_COMMISSION_WEIGHT
        return BINANCE_ORDER_TEST_WEIGHT
    if method == "executionRules":
        # Binance "WebSocket API", query execution rules.
        count = _symbol_count(params)
        if count is None or (has_params and "symbolStatus" in params):
            return BINANCE_EXECUTION_RULES_WEIGHT_CAP
        return min(BINANCE_EXECUTION_RULES_WEIGHT_PER_SYMBOL * count, BINANCE_EXECUTION_RULES_WEIGHT_CAP)
    if method == "openOrders.status":
        # Binance "WebSocket API", current open orders: 6 / 80 for all symbols.
        return 6 if has_params and "symbol" in params else 80
    return BINANCE_WEIGHTS.get(method, 1)

"""Every exchange number the rate limiter uses, each citing its source.

The sources are the exchanges' public API documents, summarised in
PROTOCOLS.md. Keeping them in one module makes them easy to update when an
exchange changes its limits; :mod:`.costs` and :mod:`.presets` only read them.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = [
    "DERIBIT_REQUEST_CREDITS",
    "DERIBIT_CREDIT_CAPACITY",
    "DERIBIT_CREDIT_REFILL_PER_SECOND",
    "DERIBIT_MATCHING_RATE",
    "DERIBIT_MATCHING_BURST",
    "DERIBIT_MATCHING_TIERS",
    "DERIBIT_SUBSCRIBE_RATE",
    "DERIBIT_MATCHING_ENGINE_METHODS",
    "DERIBIT_MATCHING_ENGINE_PREFIX",
    "DERIBIT_SUBSCRIPTION_METHODS",
    "BINANCE_STREAM_MESSAGES_PER_SECOND",
    "BINANCE_REQUEST_WEIGHT_LIMIT",
    "BINANCE_REQUEST_WEIGHT_INTERVAL",
    "BINANCE_CONNECT_WEIGHT",
    "BINANCE_WEIGHTS",
    "BINANCE_DEPTH_WEIGHTS",
    "BINANCE_TICKER_WEIGHT_PER_SYMBOL",
    "BINANCE_TICKER_WEIGHT_CAP",
    "BINANCE_ORDER_TEST_WEIGHT",
    "BINANCE_ORDER_TEST_COMMISSION_WEIGHT",
    "BINANCE_EXECUTION_RULES_WEIGHT_PER_SYMBOL",
    "BINANCE_EXECUTION_RULES_WEIGHT_CAP",
]

# Deribit API v2, "Rate limits" (credit system, per sub-account), as in
# PROTOCOLS.md: a non-matching-engine request costs 500 credits, the pool
# holds 50,000 and refills 10,000 per second (20 requests/s, bursts of 100).
DERIBIT_REQUEST_CREDITS = 500
DERIBIT_CREDIT_CAPACITY = 50_000
DERIBIT_CREDIT_REFILL_PER_SECOND = 10_000
# Deribit API v2, "Rate limits": matching-engine requests have a separate
# limit by account tier (PROTOCOLS.md): Tier 1 30/s with bursts of 100,
# Tier 2 20/s with bursts of 50, "lower tiers less (older pages: 4/s and
# 2/s)". Tier 2 was the default once, which lets a lower-tier account go over
# its limit; the default is now the lowest published figure, 2/s, with a
# burst of 2 (no burst is published for it: one second's worth), so an
# account on any tier stays inside. Pass the tier (or your own numbers).
DERIBIT_MATCHING_RATE = 2.0
DERIBIT_MATCHING_BURST = 2.0
# tier -> (requests per second, burst): the tiers PROTOCOLS.md gives numbers for.
DERIBIT_MATCHING_TIERS: Mapping[int, tuple[float, float]] = {1: (30.0, 100.0), 2: (20.0, 50.0)}
# Deribit API v2: "Subscribe requests have their own low limit (about 3 per
# second)" (PROTOCOLS.md).
DERIBIT_SUBSCRIBE_RATE = 3.0

# Deribit API v2, "Rate limits": the requests handled by the matching engine
# (order entry and cancellation); every other request is non-matching. All
# ``private/cancel_all*`` variants are matched by DERIBIT_MATCHING_ENGINE_PREFIX.
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
DERIBIT_MATCHING_ENGINE_PREFIX = "private/cancel_all"
DERIBIT_SUBSCRIPTION_METHODS = frozenset(
    {"public/subscribe", "private/subscribe", "public/unsubscribe", "private/unsubscribe"}
)

# Binance spot "WebSocket Streams", WebSocket limits (PROTOCOLS.md): 5
# incoming messages per second per connection, pings, pongs and control
# messages included; going over disconnects.
BINANCE_STREAM_MESSAGES_PER_SECOND = 5
# Binance "WebSocket API", rate limits (PROTOCOLS.md): REQUEST_WEIGHT is
# limited per IP, 6000 per minute, counted in fixed 1-minute windows (not a
# sliding bucket); opening a connection costs 2.
BINANCE_REQUEST_WEIGHT_LIMIT = 6000
BINANCE_REQUEST_WEIGHT_INTERVAL = 60.0
BINANCE_CONNECT_WEIGHT = 2

# Binance spot "WebSocket API" request weights. ping, time, exchangeInfo,
# depth and order.place are in PROTOCOLS.md; the others are from the same
# Binance doc (web-socket-api.md, each method's "Weight" line) and mirror the
# REST endpoints' weights. Methods not listed cost 1. Parameter-dependent
# weights (depth, ticker, ticker.*, order.test, executionRules,
# openOrders.status) are computed in binance_cost.
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
    "order.amendments": 4,
    "openOrders.cancelAll": 1,
    "orderList.status": 4,
    "openOrderLists.status": 6,
    "allOrders": 20,
    # Binance "WebSocket API", account requests (PROTOCOLS.md): myFilters 40,
    # allOrderLists 20; account.commission and myAllocations 20 as their REST twins.
    "allOrderLists": 20,
    "myFilters": 40,
    "myTrades": 20,
    "myAllocations": 20,
    "account.status": 20,
    "account.commission": 20,
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
# Binance "WebSocket API", depth: weight by ``limit`` (default 100, max 5000),
# as (largest limit, weight) pairs in increasing order.
BINANCE_DEPTH_WEIGHTS = ((100, 5), (500, 25), (1000, 50), (5000, 250))
# Binance "WebSocket API", rolling window ticker (``ticker``): 4 per symbol
# for 1-50 symbols, 200 above that (at most 200 symbols per request).
BINANCE_TICKER_WEIGHT_PER_SYMBOL = 4
BINANCE_TICKER_WEIGHT_CAP = 200
# Binance "WebSocket API", ``order.test``: 1, or 20 with computeCommissionRates.
BINANCE_ORDER_TEST_WEIGHT = 1
BINANCE_ORDER_TEST_COMMISSION_WEIGHT = 20
# Binance "WebSocket API", ``executionRules``: 2 per symbol, capped at 40;
# 40 for all symbols or a ``symbolStatus`` query.
BINANCE_EXECUTION_RULES_WEIGHT_PER_SYMBOL = 2
BINANCE_EXECUTION_RULES_WEIGHT_CAP = 40

"""zen_websocket: a synchronous, threaded WebSocket client for trading APIs.

Five core functions::

    import zen_websocket as zw

    client = zw.connect("wss://test.deribit.com/ws/api/v2")
    client.send_message({"jsonrpc": "2.0", "id": 1, "method": "public/test"})
    client.subscribe(["deribit_price_index.btc_usd"])
    client.get_state()        # "connected"
    client.close()

Underneath: reconnection with backoff, heartbeats, JSON-RPC correlation,
subscription restore, rate limiting and telemetry. See the README.
"""

from __future__ import annotations

import logging

from . import errors, jsonrpc, rate_limiter, recorder, redact, telemetry
from .client import Client, ConnectionState, close_all, connect, open_clients
from .config import ClientConfig, HeartbeatConfig
from .errors import (
    CallbackError,
    ConfigError,
    ConnectError,
    ConnectionClosed,
    ConnectionLost,
    HeartbeatTimeout,
    JsonRpcError,
    MessageTooLarge,
    NotConnectedError,
    ProtocolError,
    RateLimited,
    RequestTimeout,
    SilenceTimeout,
    SubscriptionError,
    UsageError,
    ZenWebSocketError,
)
from .rate_limiter import MultiRateLimiter, RateLimiter, binance_cost, deribit_cost, simple_cost
from .supervisor import ClientSupervisor

__version__ = "0.1.0"

# Libraries never configure logging; applications do.
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "CallbackError",
    "Client",
    "ClientConfig",
    "ClientSupervisor",
    "ConfigError",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionLost",
    "ConnectionState",
    "HeartbeatConfig",
    "HeartbeatTimeout",
    "JsonRpcError",
    "MessageTooLarge",
    "MultiRateLimiter",
    "NotConnectedError",
    "ProtocolError",
    "RateLimited",
    "RateLimiter",
    "RequestTimeout",
    "SilenceTimeout",
    "SubscriptionError",
    "UsageError",
    "ZenWebSocketError",
    "__version__",
    "binance_cost",
    "close_all",
    "connect",
    "deribit_cost",
    "errors",
    "jsonrpc",
    "open_clients",
    "rate_limiter",
    "recorder",
    "redact",
    "simple_cost",
    "telemetry",
]

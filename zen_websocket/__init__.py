"""zen_websocket: a synchronous, threaded WebSocket client for trading APIs."""

from __future__ import annotations

import logging

from . import errors, telemetry
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

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "CallbackError",
    "ClientConfig",
    "ConfigError",
    "ConnectError",
    "ConnectionClosed",
    "ConnectionLost",
    "HeartbeatConfig",
    "HeartbeatTimeout",
    "JsonRpcError",
    "MessageTooLarge",
    "NotConnectedError",
    "ProtocolError",
    "RateLimited",
    "RequestTimeout",
    "SilenceTimeout",
    "SubscriptionError",
    "UsageError",
    "ZenWebSocketError",
    "__version__",
    "errors",
    "telemetry",
]

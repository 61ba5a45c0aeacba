"""Bybit v5 public topics: subscriptions acknowledged by ``req_id``, and the JSON ping.

Sources: Bybit v5 "WebSocket Connect" documentation
(bybit-exchange.github.io/docs/v5/ws/connect), summarised in the project's
PROTOCOLS.md.

Example::

    from zen_websocket.platforms import bybit

    with bybit.connect(["orderbook.50.BTCUSDT", "publicTrade.ETHUSDT"]) as client:
        for message in client:      # {"topic": "orderbook.50.BTCUSDT", "type": "snapshot", "data": {...}}
            ...

Each subscribe carries a ``req_id`` and at most 10 topics (spot's limit);
the answer ``{"success": ..., "req_id": ...}`` is matched by the dialect
and consumed, and ``success: false`` refuses the topics it names.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from ..client import Client
from ..subscriptions import BybitDialect
from . import connect_and_subscribe

__all__ = ["SPOT_URL", "LINEAR_URL", "INVERSE_URL", "OPTION_URL", "HEARTBEAT", "is_pong", "options", "connect"]

# Bybit v5 (PROTOCOLS.md): public endpoints per product.
SPOT_URL = "wss://stream.bybit.com/v5/public/spot"
LINEAR_URL = "wss://stream.bybit.com/v5/public/linear"
INVERSE_URL = "wss://stream.bybit.com/v5/public/inverse"
OPTION_URL = "wss://stream.bybit.com/v5/public/option"


def is_pong(text: Any) -> bool:
    """Whether ``text`` is Bybit's answer to ``{"op": "ping"}``.

    Public streams answer ``{"success": true, "ret_msg": "pong", ..., "op": "ping"}``,
    private ones ``{"op": "pong", ...}`` (PROTOCOLS.md).
    """
    if not isinstance(text, str) or '"pong"' not in text:  # cheap test first: it runs on every frame
        return False
    try:
        reply = json.loads(text)
    except ValueError:
        return False
    return isinstance(reply, dict) and (reply.get("op") == "pong" or reply.get("ret_msg") == "pong")


# Bybit v5 (PROTOCOLS.md): send {"op": "ping"} every 20 s.
HEARTBEAT: dict[str, Any] = {"type": "custom", "interval": 20.0, "message": {"op": "ping"}, "expect": is_pong}


def options(**extra: Any) -> dict[str, Any]:
    """Client options for one Bybit public connection.

    :class:`~zen_websocket.subscriptions.BybitDialect` (``req_id`` acks
    checked, 10 topics per request) and the ``{"op": "ping"}`` heartbeat
    every 20 s (pongs consumed, never delivered).

    Args:
        **extra: any client option; overrides the presets.
    """
    preset: dict[str, Any] = {"subscription_format": BybitDialect(), "heartbeat_config": dict(HEARTBEAT)}
    preset.update(extra)
    return preset


def connect(topics: str | Iterable[str] = (), *, url: str = SPOT_URL, **options_: Any) -> Client:
    """Connect to Bybit public topics and subscribe to ``topics`` (acknowledged).

    Args:
        topics: topic names to subscribe now.
        url: the endpoint (a URL without a path gets ``/v5/public/spot``).
        **options_: client options; override :func:`options`.

    Raises:
        ConnectError: the connection failed.
        SubscriptionError: a topic was refused (the client is closed).
    """
    if urlsplit(url).path in ("", "/"):
        url = url.rstrip("/") + "/v5/public/spot"
    return connect_and_subscribe(url, topics, options(**options_))

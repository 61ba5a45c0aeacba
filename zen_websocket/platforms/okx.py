"""OKX v5 public channels: subscriptions whose acks are checked, and the text ping.

Sources: OKX API v5 "WebSocket" documentation (www.okx.com/docs-v5),
summarised in the project's PROTOCOLS.md.

Example::

    from zen_websocket.platforms import okx

    with okx.connect(["tickers:BTC-USDT", "books5:ETH-USDT"]) as client:
        for message in client:      # {"arg": {"channel": "tickers", "instId": "BTC-USDT"}, "data": [...]}
            ...

Channel names are ``"<channel>:<instId>"`` (``"instruments:instType=SPOT"``
for args other than ``instId``); see :func:`~zen_websocket.subscriptions.okx_arg`.
OKX acknowledges each channel with ``{"event": "subscribe", "arg": {...}}``:
the dialect matches those itself (they carry no request id), so a refused
channel raises :class:`~zen_websocket.SubscriptionError` with ``subscribe(...,
wait=True)`` and leaves the restore set.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from ..client import Client
from ..subscriptions import OkxDialect
from . import connect_and_subscribe

__all__ = ["PUBLIC_URL", "HEARTBEAT", "HEARTBEAT_INTERVAL", "options", "connect"]

# OKX v5 (PROTOCOLS.md): the public channels endpoint.
PUBLIC_URL = "wss://ws.okx.com:8443/ws/v5/public"
# OKX v5 (PROTOCOLS.md): send the text "ping" when nothing was received for
# under 30 s; the server answers "pong"; 30 s without data closes the
# connection. Every 20 s leaves 10 s for the answer.
HEARTBEAT_INTERVAL = 20.0
HEARTBEAT: dict[str, Any] = {
    "type": "custom",
    "interval": HEARTBEAT_INTERVAL,
    "timeout": 10.0,
    "message": "ping",
    "expect": "pong",
}


def options(**extra: Any) -> dict[str, Any]:
    """Client options for one OKX public connection.

    A fresh :class:`~zen_websocket.subscriptions.OkxDialect` (its
    acknowledgement bookkeeping is per connection: one call per client)
    and the ``ping``/``pong`` text heartbeat (consumed, never delivered).

    Args:
        **extra: any client option; overrides the presets.
    """
    preset: dict[str, Any] = {"subscription_format": OkxDialect(), "heartbeat_config": dict(HEARTBEAT)}
    preset.update(extra)
    return preset


def connect(channels: str | Iterable[str] = (), *, url: str = PUBLIC_URL, **options_: Any) -> Client:
    """Connect to OKX public channels and subscribe to ``channels`` (acknowledged).

    Args:
        channels: ``"<channel>:<instId>"`` names to subscribe now.
        url: the endpoint (a URL without a path gets ``/ws/v5/public``).
        **options_: client options; override :func:`options`.

    Raises:
        ConnectError: the connection failed.
        SubscriptionError: a channel was refused (the client is closed).
    """
    if urlsplit(url).path in ("", "/"):
        url = url.rstrip("/") + "/ws/v5/public"
    return connect_and_subscribe(url, channels, options(**options_))

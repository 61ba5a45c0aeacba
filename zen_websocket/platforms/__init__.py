"""Exchange adapters: presets and hooks that return ordinary ``Client`` options.

Adapters translate; they don't own sockets and don't wrap the client::

    from zen_websocket.platforms import binance, bybit, deribit, okx

    client = zw.connect(url, **binance.options())

One module per exchange: :mod:`.deribit`, :mod:`.binance`, :mod:`.okx`,
:mod:`.bybit`. Each cites the exchange documentation its numbers come from.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..client import Client

__all__: list[str] = []


def connect_and_subscribe(url: str, channels: str | Iterable[str], options: dict[str, Any]) -> Client:
    """Connect a client with ``options`` and subscribe ``channels``, waiting for the acknowledgement.

    The adapters' ``connect()`` helpers share this: a refused channel closes
    the client before the :class:`~zen_websocket.SubscriptionError` propagates,
    so no half-set-up client is left running.
    """
    client = Client(url, **options)
    client.connect()
    names = [channels] if isinstance(channels, str) else list(channels)
    if names:
        try:
            client.subscribe(names, wait=True)
        except BaseException:
            client.close()
            raise
    return client

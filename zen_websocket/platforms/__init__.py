"""Exchange adapters: presets and hooks that return ordinary ``Client`` options.

Adapters translate; they don't own sockets and don't wrap the client::

    from zen_websocket.platforms import binance, bybit, deribit, okx

    client = zw.connect(url, **binance.options())

One module per exchange: :mod:`.deribit`, :mod:`.binance`, :mod:`.okx`,
:mod:`.bybit`. Each cites the exchange documentation its numbers come from.
"""

__all__: list[str] = []

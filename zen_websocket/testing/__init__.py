"""Shipped test servers: a real WebSocket server on loopback and exchange emulators.

Tests never mock WebSocket behaviour: they talk to these servers, which speak
real WebSocket (``websockets`` library) over real TCP, optionally TLS.

Example::

    from zen_websocket.testing import DeribitEmulator, MockWebSocketServer

    with MockWebSocketServer(echo=True) as server:
        ...  # connect a client to server.url, send {"op": "hello"}
        server.assert_message_sent({"op": "hello"})
        server.drop_connections()  # TCP gone without a close frame

    with DeribitEmulator(credentials={"id": "secret"}) as deribit:
        ...  # connect to deribit.url, authenticate, subscribe
        deribit.publish("deribit_price_index.btc_usd", {"price": 1.0})

Needs the ``testing`` extra (``pip install zen_websocket[testing]``):
``websockets`` and ``trustme``.
"""

try:
    import websockets  # noqa: F401  (the servers are built on it)
except ImportError as exc:  # without the extra: say which one, not just "No module named 'websockets'"
    raise ImportError(
        "zen_websocket.testing needs the 'testing' extra (websockets, trustme): pip install 'zen_websocket[testing]'",
        name=exc.name,
    ) from exc

from .binance import BinanceEmulator
from .bybit import BybitEmulator
from .deribit import DeribitEmulator
from .feed import FeedCollector, SequencedFeed, gaps
from .okx import OkxEmulator
from .server import MockConnection, MockWebSocketServer, StreamHandle

__all__ = [
    "BinanceEmulator",
    "BybitEmulator",
    "DeribitEmulator",
    "MockConnection",
    "MockWebSocketServer",
    "OkxEmulator",
    "FeedCollector",
    "SequencedFeed",
    "StreamHandle",
    "gaps",
]

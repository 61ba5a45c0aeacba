"""A minimal Bybit v5 public-topic emulator for client tests.

It enforces what the Bybit adapter relies on (PROTOCOLS.md; Bybit v5
"WebSocket Connect" documentation):

- ``{"op": "ping", "req_id": ...}`` is answered ``{"success": true,
  "ret_msg": "pong", "conn_id": ..., "req_id": ..., "op": "ping"}``;
- ``{"op": "subscribe", "args": [...], "req_id": ...}`` is answered once,
  by ``req_id``: ``success: true``, or ``success: false`` with a
  ``ret_msg`` naming the refused topics (unknown topic or symbol); more than
  ``max_args`` topics (spot: 10) refuses the whole request;
- data is pushed as ``{"topic": ..., "type": "snapshot"|"delta", "ts": ..., "data": ...}``.

Example::

    from zen_websocket.testing import BybitEmulator

    with BybitEmulator() as bybit:
        ...  # a client connects to bybit.url + "/v5/public/spot" and subscribes orderbook.50.BTCUSDT
        bybit.publish("orderbook.50.BTCUSDT", {"s": "BTCUSDT", "b": [], "a": []})
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from websockets.exceptions import ConnectionClosed

from .server import Message, MockConnection, MockWebSocketServer

__all__ = ["BybitEmulator", "SYMBOLS", "PATHS"]

# Bybit v5 (PROTOCOLS.md): one public endpoint per product.
PATHS = frozenset({"/v5/public/spot", "/v5/public/linear", "/v5/public/inverse", "/v5/public/option"})
SYMBOLS = frozenset({"BTCUSDT", "ETHUSDT", "SOLUSDT"})
# Bybit v5 "How to subscribe": spot accepts at most 10 args per request.
MAX_ARGS = 10
# Bybit v5 public topics (a sample of the documented ones).
_TOPIC_RE = re.compile(
    r"(?:orderbook\.(?:1|50|200|1000)|publicTrade|tickers|kline\.(?:1|3|5|15|30|60|120|240|360|720|D|W|M))"
    r"\.([A-Z0-9]+)"
)


class BybitEmulator(MockWebSocketServer):
    """Bybit v5 public topics, enough for client tests.

    Args:
        symbols: symbols accepted in topics.
        max_args: topics allowed per subscribe request.
        **kwargs: passed to :class:`MockWebSocketServer`.

    Attributes:
        requests: every decoded JSON request, in order.
        pings: ``{"op": "ping"}`` requests answered.
    """

    def __init__(self, *, symbols: Iterable[str] = SYMBOLS, max_args: int = MAX_ARGS, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.symbols = frozenset(symbols)
        self.max_args = max_args
        self.requests: list[dict[str, Any]] = []
        self.pings = 0
        self._bybit_lock = threading.Lock()  # guards each connection's "bybit_topics"

    def is_valid_topic(self, topic: Any) -> bool:
        """Whether ``topic`` is a known topic on a known symbol."""
        match = _TOPIC_RE.fullmatch(topic) if isinstance(topic, str) else None
        return match is not None and match.group(1) in self.symbols

    def subscriptions(self, conn: MockConnection | int) -> list[str]:
        """Topics subscribed on a connection (object or index in :attr:`all_connections`)."""
        if isinstance(conn, int):
            conn = self.all_connections[conn]
        with self._bybit_lock:
            return list(conn.session.get("bybit_topics", []))

    @property
    def all_subscriptions(self) -> set[str]:
        """Topics subscribed on any open connection."""
        return {topic for conn in self.connections for topic in self.subscriptions(conn)}

    def publish(self, topic: str, data: Any, kind: str = "snapshot") -> int:
        """Push ``{"topic", "type", "ts", "data"}`` to every connection subscribed to ``topic``."""
        message = {"topic": topic, "type": kind, "ts": int(time.time() * 1000), "data": data}
        sent = 0
        for conn in self.connections:
            if topic not in self.subscriptions(conn):
                continue
            try:
                conn.send(message)
                sent += 1
            except ConnectionClosed:
                pass
        return sent

    # ------------------------------------------------------------------ server hooks

    def check_handshake(self, path: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
        return None if path.split("?", 1)[0] in PATHS else (404, "Not Found\n")

    def connection_opened(self, conn: MockConnection) -> None:
        conn.session["bybit_conn_id"] = secrets.token_hex(8)
        conn.session["bybit_topics"] = []
        super().connection_opened(conn)

    def message_received(self, conn: MockConnection, message: Message) -> Any:
        conn_id = conn.session["bybit_conn_id"]
        try:
            request = json.loads(message)
        except ValueError:
            return {"success": False, "ret_msg": "error:invalid json", "conn_id": conn_id, "op": ""}
        if not isinstance(request, dict):
            return {"success": False, "ret_msg": "error:invalid request", "conn_id": conn_id, "op": ""}
        with self._cond:
            self.requests.append(request)
            self._cond.notify_all()
        op = request.get("op")
        req_id = request.get("req_id", "")
        reply: dict[str, Any] = {"conn_id": conn_id, "req_id": req_id, "op": op}
        if op == "ping":
            with self._cond:
                self.pings += 1
            return {"success": True, "ret_msg": "pong", **reply}
        args = request.get("args")
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            return {"success": False, "ret_msg": f"error:handler not found,op:{op}", **reply}
        if len(args) > self.max_args:
            return {"success": False, "ret_msg": f"args size >{self.max_args}", **reply}
        bad = [topic for topic in args if not self.is_valid_topic(topic)]
        with self._bybit_lock:
            topics: list[str] = conn.session["bybit_topics"]
            for topic in args:
                if topic in bad:
                    continue
                if op == "subscribe" and topic not in topics:
                    topics.append(topic)
                elif op == "unsubscribe" and topic in topics:
                    topics.remove(topic)
        with self._cond:
            self._cond.notify_all()
        if bad:
            return {"success": False, "ret_msg": f"Invalid topic :[{','.join(map(str, bad))}]", **reply}
        return {"success": True, "ret_msg": "", **reply}

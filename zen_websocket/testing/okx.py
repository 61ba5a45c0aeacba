"""A minimal OKX v5 public-channel emulator for client tests.

It enforces what the OKX adapter relies on (PROTOCOLS.md; OKX API v5
"WebSocket" documentation):

- the text ``ping`` is answered with ``pong``;
- ``{"op": "subscribe", "args": [{"channel": ..., "instId": ...}]}`` is
  answered channel by channel, in order: ``{"event": "subscribe", "arg":
  {...}, "connId": ...}`` for a known channel and instrument, ``{"event":
  "error", "code": "60018", "msg": ..., "connId": ...}`` otherwise (no
  request id in either, unless ``echo_id=True``); a malformed request gets
  ``60012``;
- data is pushed as ``{"arg": {...}, "data": [...]}``;
- a connection on which nothing was received or sent for 30 s is closed.

Example::

    from zen_websocket.testing import OkxEmulator

    with OkxEmulator(time_scale=0.01) as okx:         # the 30 s idle cut after 0.3 s
        ...  # a client connects to okx.url + "/ws/v5/public" and subscribes tickers:BTC-USDT
        okx.publish("tickers:BTC-USDT", {"instId": "BTC-USDT", "last": "97000"})
"""

from __future__ import annotations

import enum
import json
import secrets
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from websockets.exceptions import ConnectionClosed

from ..subscriptions import okx_arg, okx_channel
from .server import Message, MockConnection, MockWebSocketServer
from .server import Timer as ServerTimer

__all__ = ["OkxEmulator", "PUBLIC_CHANNELS", "INSTRUMENTS"]

PATH = "/ws/v5/public"
# OKX v5 public channels keyed by instId (a sample of the documented ones).
PUBLIC_CHANNELS = frozenset(
    {"tickers", "trades", "trades-all", "books", "books5", "bbo-tbt", "books-l2-tbt", "candle1m", "index-tickers"}
)
INSTRUMENTS = frozenset({"BTC-USDT", "ETH-USDT", "SOL-USDT", "BTC-USDT-SWAP", "ETH-USDT-SWAP"})
# OKX v5 (PROTOCOLS.md): no data for 30 s closes the connection.
IDLE_TIMEOUT = 30.0
# OKX documents no close code for the idle cut: an application code
# (4000-4999, which clients treat as recoverable).
IDLE_CLOSE_CODE = 4004


class _Unset(enum.Enum):
    """A duration left at OKX's value (scaled by ``time_scale``)."""

    DEFAULT = "default"


_DEFAULT = _Unset.DEFAULT


class OkxEmulator(MockWebSocketServer):
    """OKX v5 public channels, enough for client tests.

    Args:
        channels: channel names accepted.
        instruments: instIds accepted.
        idle_timeout: seconds without a frame either way before the server
            closes; default OKX's 30 s times ``time_scale``; ``None``: never.
        time_scale: multiplies the default ``idle_timeout``.
        echo_id: put the request's ``"id"`` into its acks and errors.
        **kwargs: passed to :class:`MockWebSocketServer`.

    Attributes:
        requests: every decoded JSON request, in order.
    """

    def __init__(
        self,
        *,
        channels: Iterable[str] = PUBLIC_CHANNELS,
        instruments: Iterable[str] = INSTRUMENTS,
        idle_timeout: float | _Unset | None = _DEFAULT,
        time_scale: float = 1.0,
        echo_id: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.channels = frozenset(channels)
        self.instruments = frozenset(instruments)
        self.idle_timeout: float | None = (
            IDLE_TIMEOUT * time_scale if isinstance(idle_timeout, _Unset) else idle_timeout
        )
        self.echo_id = echo_id
        self.requests: list[dict[str, Any]] = []
        self.idle_closes = 0
        """Connections closed for idleness."""
        self._okx_lock = threading.Lock()  # guards each connection's "okx" session

    # ------------------------------------------------------------------ helpers

    def subscriptions(self, conn: MockConnection | int) -> list[str]:
        """Channel names subscribed on a connection (object or index in :attr:`all_connections`)."""
        if isinstance(conn, int):
            conn = self.all_connections[conn]
        with self._okx_lock:
            return [okx_channel(arg) for arg in conn.session.get("okx_args", [])]

    @property
    def all_subscriptions(self) -> set[str]:
        """Channel names subscribed on any open connection."""
        return {name for conn in self.connections for name in self.subscriptions(conn)}

    def publish(self, channel: str | Mapping[str, Any], data: Any) -> int:
        """Push ``{"arg": arg, "data": [data]}`` to every connection subscribed to ``channel``."""
        arg = dict(channel) if isinstance(channel, Mapping) else okx_arg(channel)
        name = okx_channel(arg)
        sent = 0
        for conn in self.connections:
            if name not in self.subscriptions(conn):
                continue
            try:
                conn.send({"arg": arg, "data": data if isinstance(data, list) else [data]})
                sent += 1
            except ConnectionClosed:
                continue
            self._touch(conn)
        return sent

    # ------------------------------------------------------------------ server hooks

    def check_handshake(self, path: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
        return None if path.split("?", 1)[0] == PATH else (404, "Not Found\n")

    def connection_opened(self, conn: MockConnection) -> None:
        conn.session["okx_conn_id"] = secrets.token_hex(4)
        conn.session["okx_args"] = []
        self._touch(conn)
        super().connection_opened(conn)

    def frame_received(self, conn: MockConnection, kind: str, payload: bytes) -> None:
        if kind in ("text", "binary", "ping", "pong"):
            self._touch(conn)

    def message_received(self, conn: MockConnection, message: Message) -> Any:
        if message == "ping":
            return "pong"
        conn_id = conn.session["okx_conn_id"]
        try:
            request = json.loads(message)
        except ValueError:
            request = None
        with self._cond:
            if isinstance(request, dict):
                self.requests.append(request)
            self._cond.notify_all()
        args = request.get("args") if isinstance(request, dict) else None
        op = request.get("op") if isinstance(request, dict) else None
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list) or not args:
            text = message if isinstance(message, str) else repr(message)
            return {"event": "error", "code": "60012", "msg": f"Invalid request: {text[:200]}", "connId": conn_id}
        echoed = {"id": request["id"]} if self.echo_id and "id" in request else {}
        for arg in args:
            conn.send(self._answer(conn, op, arg, conn_id, echoed))
        return None

    def _answer(self, conn: MockConnection, op: str, arg: Any, conn_id: str, echoed: dict[str, Any]) -> Any:
        if not isinstance(arg, dict) or "channel" not in arg:
            return {"event": "error", "code": "60012", "msg": f"Invalid request: {arg!r}", "connId": conn_id, **echoed}
        channel, inst = arg.get("channel"), arg.get("instId")
        if channel not in self.channels or inst not in self.instruments:
            msg = f"Wrong URL or channel:{channel},instId:{inst} doesn't exist. Please use the correct URL, channel and parameters referring to API document."
            return {"event": "error", "code": "60018", "msg": msg, "connId": conn_id, **echoed}
        name = okx_channel(arg)
        with self._okx_lock:
            subscribed: list[dict[str, Any]] = conn.session["okx_args"]
            known = [okx_channel(a) for a in subscribed]
            if op == "subscribe" and name not in known:
                subscribed.append(dict(arg))
            elif op == "unsubscribe" and name in known:
                del subscribed[known.index(name)]
        with self._cond:
            self._cond.notify_all()
        return {"event": op, "arg": arg, "connId": conn_id, **echoed}

    # ------------------------------------------------------------------ idle cut

    def _touch(self, conn: MockConnection) -> None:
        if self.idle_timeout is None:
            return
        timer: ServerTimer | None = conn.session.get("okx_idle")
        if timer is not None:
            timer.cancel()
        conn.session["okx_idle"] = conn.call_later(self.idle_timeout, lambda: self._idle(conn))

    def _idle(self, conn: MockConnection) -> None:
        if not conn.is_open:
            return
        with self._cond:
            self.idle_closes += 1
            self._cond.notify_all()
        conn.close(IDLE_CLOSE_CODE, "No data received in 30s", wait=False)

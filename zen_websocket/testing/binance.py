"""A Binance spot market-data streams emulator for client tests.

Raw streams (``/ws``, ``/ws/<stream>``), combined streams
(``/stream?streams=a/b``, messages wrapped as ``{"stream", "data"}``), live
``SUBSCRIBE`` / ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` /
``SET_PROPERTY`` / ``GET_PROPERTY``, the incoming message rate limit, the
stream limit, server pings with a pong deadline, and ``serverShutdown``.

Source for every constant: Binance spot "WebSocket Streams" documentation
(developers.binance.com), summarised in the project's PROTOCOLS.md.

Example::

    from zen_websocket.testing import BinanceEmulator

    with BinanceEmulator(ping_interval=0.05, pong_timeout=0.2) as binance:
        ...  # client connects to binance.url + "/ws" and SUBSCRIBEs to btcusdt@trade
        binance.wait_for(lambda: "btcusdt@trade" in binance.all_subscriptions)
        feed = binance.start_trades("btcusdt@trade", interval=0.01, count=10)
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConcurrencyError, ConnectionClosed

from .server import Message, MockConnection, MockWebSocketServer, StreamHandle

__all__ = ["BinanceEmulator", "BinanceSession", "RateViolation"]

# Binance spot WebSocket Streams limits (developers.binance.com, "WebSocket Limits").
MAX_INCOMING_PER_SECOND = 5  # pings, pongs and control messages count
MAX_STREAMS_PER_CONNECTION = 1024
PING_INTERVAL = 20.0  # the server pings every 20 s
PONG_TIMEOUT = 60.0  # no pong within 1 minute: disconnected
MAX_CONNECTION_AGE = 24 * 3600.0  # connections live at most 24 h

# Binance error codes for live control messages ("Error Messages").
UNKNOWN_PROPERTY = 0
INVALID_VALUE_TYPE = 1
INVALID_REQUEST = 2
INVALID_JSON = 3

POLICY_VIOLATION = 1008


@dataclass
class RateViolation:
    """A connection went over the incoming message limit (and was closed)."""

    connection_id: int
    count: int
    window: float
    at: float


@dataclass
class BinanceSession:
    """Per-connection emulator state (``conn.session["binance"]``)."""

    streams: list[str] = field(default_factory=list)
    combined: bool = False
    incoming: deque[float] = field(default_factory=deque)
    violated: bool = False
    pending_pings: dict[bytes, float] = field(default_factory=dict)
    ping_counter: itertools.count[int] = field(default_factory=itertools.count)


class BinanceEmulator(MockWebSocketServer):
    """Binance spot market-data streams, enough for client tests.

    Choices where Binance's behaviour is not spelled out:

    * Unknown paths get HTTP 404 at the handshake.
    * Going over ``max_incoming_per_second`` closes the connection with 1008
      ("Too many messages"); going over ``max_streams`` answers error code 2.
    * A missed pong closes the connection with 1008 ("Pong timeout").
    * ``serverShutdown`` events are sent unwrapped, even on combined streams.
    * Incoming frames are counted in the receive thread as they arrive:
      text and binary messages, pings and pongs (the ``websockets`` library
      answers pings itself; the emulator sees every ping and pong frame
      through :meth:`MockWebSocketServer.frame_received`).

    Args:
        max_incoming_per_second: Incoming frames allowed per ``rate_window``;
            ``None`` disables the limit.
        rate_window: Window of the incoming limit, in seconds.
        max_streams: Streams allowed per connection.
        ping_interval: Seconds between server pings; ``None``: no pings.
        pong_timeout: Seconds to answer a ping with a pong carrying its payload;
            ``None``: never disconnect.
        max_connection_age: Close connections this many seconds after they
            open (Binance: 24 h); ``None`` (default): never.
        **kwargs: Passed to :class:`MockWebSocketServer` (``tls``, ``port``...).
    """

    def __init__(
        self,
        *,
        max_incoming_per_second: int | None = MAX_INCOMING_PER_SECOND,
        rate_window: float = 1.0,
        max_streams: int = MAX_STREAMS_PER_CONNECTION,
        ping_interval: float | None = PING_INTERVAL,
        pong_timeout: float | None = PONG_TIMEOUT,
        max_connection_age: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.max_incoming_per_second = max_incoming_per_second
        self.rate_window = rate_window
        self.max_streams = max_streams
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.max_connection_age = max_connection_age
        self.control_messages: list[dict[str, Any]] = []
        """Every decoded control message received, in order."""
        self.violations: list[RateViolation] = []
        """Rate limit violations, in order."""
        self.pings_sent = 0
        """Pings the server sent."""
        self.pong_timeouts = 0
        """Connections closed for a missing pong."""
        # Guards BinanceSession fields shared by the connection, receive and timer threads.
        self._session_lock = threading.Lock()

    # ------------------------------------------------------------------ public helpers

    @staticmethod
    def session(conn: MockConnection) -> BinanceSession:
        """The emulator state of a connection."""
        session = conn.session.get("binance")
        if session is None:
            session = conn.session["binance"] = BinanceSession()
        return session

    def subscriptions(self, conn: MockConnection | int) -> list[str]:
        """Streams of a connection (object, or index in :attr:`all_connections`), in order."""
        if isinstance(conn, int):
            conn = self.all_connections[conn]
        with self._session_lock:
            return list(self.session(conn).streams)

    @property
    def all_subscriptions(self) -> set[str]:
        """Streams subscribed on any open connection."""
        streams: set[str] = set()
        with self._session_lock:
            for conn in self.connections:
                streams.update(self.session(conn).streams)
        return streams

    def publish(self, stream: str, data: Any) -> int:
        """Send ``data`` to every connection subscribed to ``stream``.

        Combined-stream connections get ``{"stream": stream, "data": data}``.

        Returns:
            The number of connections it was sent to.
        """
        sent = 0
        for conn in self.connections:
            with self._session_lock:
                session = self.session(conn)
                subscribed = stream in session.streams
                combined = session.combined
            if not subscribed:
                continue
            try:
                conn.send({"stream": stream, "data": data} if combined else data)
                sent += 1
            except ConnectionClosed:
                pass
        return sent

    def start_trades(
        self, stream: str = "btcusdt@trade", interval: float = 0.1, count: int | None = None
    ) -> StreamHandle:
        """Publish numbered trade events on ``stream`` every ``interval`` seconds.

        The trade id ``t`` counts from 1 across the feed, so gaps show missed
        messages; the price is ``50000 + t``.
        """
        symbol = stream.split("@", 1)[0].upper()

        def tick(seq: int) -> None:
            now = int(time.time() * 1000)
            self.publish(
                stream,
                {
                    "e": "trade",
                    "E": now,
                    "s": symbol,
                    "t": seq,
                    "p": f"{50_000 + seq:.2f}",
                    "q": "0.001",
                    "T": now,
                    "m": False,
                    "M": True,
                },
            )

        return self.start_feed(tick, interval, count)

    def server_shutdown(self, conn: MockConnection | None = None) -> int:
        """Send ``{"e": "serverShutdown", "E": <ms>}`` to ``conn`` or every connection."""
        event = {"e": "serverShutdown", "E": int(time.time() * 1000)}
        sent = 0
        for c in [conn] if conn is not None else self.connections:
            try:
                c.send(event)
                sent += 1
            except ConnectionClosed:
                pass
        return sent

    # ------------------------------------------------------------------ server hooks

    def check_handshake(self, path: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
        parts = urlsplit(path)
        if parts.path in ("/ws", "/ws/", "/stream") or (parts.path.startswith("/ws/") and parts.path.count("/") == 2):
            return None
        return (404, "Not Found\n")

    def connection_opened(self, conn: MockConnection) -> None:
        parts = urlsplit(conn.path)
        session = self.session(conn)
        with self._session_lock:
            if parts.path == "/stream":
                session.combined = True
                names = parse_qs(parts.query).get("streams", [""])[0]
                session.streams = [s for s in names.split("/") if s][: self.max_streams]
            elif parts.path.startswith("/ws/") and parts.path != "/ws/":
                session.streams = [parts.path[len("/ws/") :]]
        if self.ping_interval is not None:
            conn.call_every(self.ping_interval, lambda: self._send_ping(conn))
        if self.max_connection_age is not None:
            conn.call_later(self.max_connection_age, lambda: conn.close(1000, "max connection age", wait=False))
        super().connection_opened(conn)

    def frame_received(self, conn: MockConnection, kind: str, payload: bytes) -> None:
        session = self.session(conn)
        if kind == "pong":
            with self._session_lock:
                session.pending_pings.pop(payload, None)
        if kind not in ("text", "binary", "ping", "pong") or self.max_incoming_per_second is None:
            return
        now = time.monotonic()
        with self._session_lock:
            session.incoming.append(now)
            while session.incoming and session.incoming[0] <= now - self.rate_window:
                session.incoming.popleft()
            count = len(session.incoming)
            violated = count > self.max_incoming_per_second and not session.violated
            if violated:
                session.violated = True
        if violated:
            with self._cond:
                self.violations.append(RateViolation(conn.id, count, self.rate_window, time.time()))
                self._cond.notify_all()
            conn.close(POLICY_VIOLATION, "Too many messages", wait=False)

    def message_received(self, conn: MockConnection, message: Message) -> Any:
        try:
            request = json.loads(message)
        except ValueError as exc:
            return {"code": INVALID_JSON, "msg": f"Invalid JSON: {exc}", "id": None}
        if not isinstance(request, dict):
            return {"code": INVALID_REQUEST, "msg": "Invalid request: expected an object", "id": None}
        with self._cond:
            self.control_messages.append(request)
        request_id = request.get("id")
        if request_id is not None and (not isinstance(request_id, int | str) or isinstance(request_id, bool)):
            return {"code": INVALID_REQUEST, "msg": "Invalid request: invalid id", "id": None}
        method = request.get("method")
        params = request.get("params", [])
        session = self.session(conn)
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list):
                return {"code": INVALID_REQUEST, "msg": "Invalid request: params must be an array", "id": request_id}
            for name in params:
                if not isinstance(name, str):
                    return {"code": INVALID_VALUE_TYPE, "msg": "Invalid value type: expected String", "id": request_id}
                if not name or name != name.lower() or " " in name:
                    return {
                        "code": INVALID_REQUEST,
                        "msg": f"Invalid request: invalid stream name {name!r}",
                        "id": request_id,
                    }
            with self._session_lock:
                if method == "SUBSCRIBE":
                    new = [s for s in dict.fromkeys(params) if s not in session.streams]
                    if len(session.streams) + len(new) > self.max_streams:
                        return {
                            "code": INVALID_REQUEST,
                            "msg": f"Invalid request: too many streams (max {self.max_streams})",
                            "id": request_id,
                        }
                    session.streams.extend(new)
                else:
                    session.streams = [s for s in session.streams if s not in params]
            with self._cond:
                self._cond.notify_all()
            return {"result": None, "id": request_id}
        if method == "LIST_SUBSCRIPTIONS":
            with self._session_lock:
                return {"result": list(session.streams), "id": request_id}
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            if not isinstance(params, list) or not params or params[0] != "combined":
                return {"code": UNKNOWN_PROPERTY, "msg": "Unknown property", "id": request_id}
            if method == "GET_PROPERTY":
                with self._session_lock:
                    return {"result": session.combined, "id": request_id}
            if len(params) != 2 or not isinstance(params[1], bool):
                return {"code": INVALID_VALUE_TYPE, "msg": "Invalid value type: expected Boolean", "id": request_id}
            with self._session_lock:
                session.combined = params[1]
            return {"result": None, "id": request_id}
        return {"code": INVALID_REQUEST, "msg": f"Invalid request: unknown method {method!r}", "id": request_id}

    # ------------------------------------------------------------------ keepalive

    def _send_ping(self, conn: MockConnection) -> None:
        """Timer thread: ping, and check the pong deadline."""
        session = self.session(conn)
        with self._session_lock:
            payload = f"{int(time.time() * 1000)}-{next(session.ping_counter)}".encode()
            session.pending_pings[payload] = time.monotonic()
        try:
            conn.ping(payload)
        except (ConnectionClosed, ConcurrencyError):
            return
        with self._cond:
            self.pings_sent += 1
            self._cond.notify_all()
        if self.pong_timeout is not None:
            conn.call_later(self.pong_timeout, lambda: self._check_pong(conn, payload))

    def _check_pong(self, conn: MockConnection, payload: bytes) -> None:
        with self._session_lock:
            missed = payload in self.session(conn).pending_pings
        if missed and conn.is_open:
            with self._cond:
                self.pong_timeouts += 1
                self._cond.notify_all()
            conn.close(POLICY_VIOLATION, "Pong timeout", wait=False)

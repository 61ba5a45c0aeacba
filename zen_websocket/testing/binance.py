"""A Binance emulator for client tests: market-data streams, futures user data, WebSocket API.

It enforces the exchange's rules as documented and as seen on the wire, so a
client that passes here behaves on Binance:

- **Streams** (``/ws``, ``/ws/<stream>``, ``/stream?streams=a/b``): stream
  names are checked against the documented grammar (lowercase symbol, stream
  types in their documented case: ``btcusdt@aggTrade``, ``btcusdt@bookTicker``,
  ``btcusdt@depth@100ms``, ``!ticker@arr``...); live ``SUBSCRIBE`` /
  ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` / ``SET_PROPERTY`` /
  ``GET_PROPERTY``; ids are integers or strings of at most 36 characters.
- **Errors** in the shape seen on the wire, ``{"error": {"code": 2, "msg":
  ...}, "id": N}``, followed by a close (``error_shape="wire"``, the
  default), or in the documented ``{"code": 2, "msg": ..., "id": N}`` shape
  with the connection kept open (``error_shape="docs"``).
- **Limits**: 5 incoming messages per second per stream connection (pings,
  pongs and control messages count; going over closes with 1008), 1,024
  streams per connection, server pings every 20 s with a 1 minute pong
  deadline, and the 24 h cut, **on by default**.
- ``serverShutdown``: raw on ``/ws``, wrapped as ``{"stream":
  "!serverShutdown", "data": ...}`` on combined streams, as ``{"event":
  ...}`` on the WebSocket API.
- **Futures user data** (``api_keys=[...]``): the listen key REST endpoints
  (``POST``/``PUT``/``DELETE /fapi/v1/listenKey`` with ``X-MBX-APIKEY``) on a
  loopback HTTP server (:attr:`BinanceEmulator.rest_url`), keys valid 60
  minutes, ``/ws/<listenKey>`` streams, ``listenKeyExpired`` when a key lapses.
- **WebSocket API** (``/ws-api/v3``): ``{"id", "method", "params"}``
  requests, ``REQUEST_WEIGHT`` counted in fixed windows, status 429 with
  ``retryAfter`` over the limit and 418 (banned) for repeat offenders.

Time: ``time_scale`` multiplies Binance's long durations where you leave
them at their defaults (the 24 h cut, the 60 minute listen key validity,
the one-minute API weight window, bans), so a test runs the 24 h cut in
milliseconds without touching a private constant; a duration you pass is
taken as given. Pings (every 20 s, pong within a minute) and the 5
messages/s limit are not scaled: set ``ping_interval``/``pong_timeout`` for
fast pings; the message limit is what a client's limiter is measured against.

Source for every constant: Binance spot "WebSocket Streams", "WebSocket
API" and USDⓈ-M futures "User Data Streams" documentation
(developers.binance.com), summarised in the project's PROTOCOLS.md.

Example::

    from zen_websocket.testing import BinanceEmulator

    with BinanceEmulator(time_scale=1e-5) as binance:   # the 24 h cut after 0.86 s
        ...  # a client connects to binance.url + "/stream" and SUBSCRIBEs btcusdt@aggTrade
        binance.wait_for(lambda: "btcusdt@aggTrade" in binance.all_subscriptions)
        feed = binance.start_trades("btcusdt@aggTrade", interval=0.01, count=10)
        binance.server_shutdown(close_after=0.5)
"""

from __future__ import annotations

import enum
import functools
import http.server
import itertools
import json
import math
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.exceptions import ConcurrencyError, ConnectionClosed

from .server import Message, MockConnection, MockWebSocketServer, StreamHandle
from .server import Timer as ServerTimer

__all__ = ["BinanceEmulator", "BinanceSession", "RateViolation", "RestCall", "is_valid_stream"]

# Binance spot WebSocket Streams limits (developers.binance.com, "WebSocket Limits").
MAX_INCOMING_PER_SECOND = 5  # pings, pongs and control messages count
MAX_STREAMS_PER_CONNECTION = 1024
PING_INTERVAL = 20.0  # the server pings every 20 s
PONG_TIMEOUT = 60.0  # no pong within 1 minute: disconnected
MAX_CONNECTION_AGE = 24 * 3600.0  # connections live at most 24 h
MAX_ID_LENGTH = 36  # "id": an integer or a string of at most 36 characters
# Binance USDⓈ-M futures "User Data Streams": a listen key is valid 60 minutes.
LISTEN_KEY_VALIDITY = 3600.0
LISTEN_KEY_PATH = "/fapi/v1/listenKey"
# Binance "WebSocket API" (PROTOCOLS.md): REQUEST_WEIGHT 6000 per fixed minute.
API_WEIGHT_LIMIT = 6000
API_WINDOW = 60.0
# IP bans for repeat offenders "scale in duration from 2 minutes to 3 days"
# (Binance "LIMITS"); the emulator bans for the shortest.
API_BAN_DURATION = 120.0

# Binance error codes for live control messages ("Error Messages").
UNKNOWN_PROPERTY = 0
INVALID_VALUE_TYPE = 1
INVALID_REQUEST = 2
INVALID_JSON = 3

POLICY_VIOLATION = 1008
# Binance does not document the close code after a control error; the wire
# shows a close right after the error, and 1008 says "policy" honestly.
ERROR_CLOSE_CODE = POLICY_VIOLATION

_KLINE_INTERVALS = "1s|1m|3m|5m|15m|30m|1h|2h|4h|6h|8h|12h|1d|3d|1w|1M"
_WINDOWS = "1h|4h|1d"
# Binance spot "WebSocket Streams": every documented stream name. Symbols are
# lowercase; stream types keep their documented case.
_STREAM_RE = re.compile(
    r"[a-z0-9]+@(?:"
    r"trade|aggTrade|bookTicker|miniTicker|ticker|avgPrice"
    rf"|ticker_(?:{_WINDOWS})"
    rf"|kline_(?:{_KLINE_INTERVALS})(?:@\+08:00)?"
    r"|depth(?:5|10|20)?(?:@100ms|@1000ms)?"
    r")"
    rf"|!(?:miniTicker@arr|ticker@arr|ticker_(?:{_WINDOWS})@arr|bookTicker)"
)
_LISTEN_KEY_RE = re.compile(r"[A-Za-z0-9]{32,}")


def is_valid_stream(name: Any) -> bool:
    """Whether ``name`` is a stream Binance documents (``btcusdt@aggTrade``, ``!ticker@arr``...)."""
    return isinstance(name, str) and _STREAM_RE.fullmatch(name) is not None


class _Unset(enum.Enum):
    """A duration left at Binance's value (scaled by ``time_scale``)."""

    DEFAULT = "default"


_DEFAULT = _Unset.DEFAULT


@dataclass
class RateViolation:
    """A connection went over the incoming message limit (and was closed)."""

    connection_id: int
    count: int
    window: float
    at: float


@dataclass
class RestCall:
    """One listen key REST call the emulator answered.

    Attributes:
        method: ``POST``, ``PUT`` or ``DELETE``.
        status: the HTTP status answered.
        listen_key: the key it created, extended or deleted (None if none).
        api_key_ok: whether ``X-MBX-APIKEY`` named a known API key.
        at: ``time.monotonic()`` when it was answered.
    """

    method: str
    status: int
    listen_key: str | None
    api_key_ok: bool
    at: float


@dataclass
class _ListenKey:
    key: str
    api_key: str
    expires_at: float
    timer: ServerTimer | None = None


@dataclass
class BinanceSession:
    """Per-connection emulator state (``conn.session["binance"]``)."""

    streams: list[str] = field(default_factory=list)
    combined: bool = False
    api: bool = False  # a WebSocket API connection (/ws-api/v3)
    listen_key: str | None = None  # a user data stream (/ws/<listenKey>)
    incoming: deque[float] = field(default_factory=deque)
    violated: bool = False
    pending_pings: dict[bytes, float] = field(default_factory=dict)
    ping_counter: itertools.count[int] = field(default_factory=itertools.count)


class _Refusal(Exception):
    """A control message refused with a Binance error code."""

    def __init__(self, code: int, msg: str, request_id: Any = None) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.request_id = request_id


class BinanceEmulator(MockWebSocketServer):
    """Binance streams, futures user data and WebSocket API, with the exchange's rules.

    Args:
        max_incoming_per_second: incoming frames allowed per ``rate_window``
            on a stream connection; ``None`` disables the limit.
        rate_window: window of the incoming limit, in (real) seconds.
        max_streams: streams allowed per connection.
        ping_interval: seconds between server pings; ``None``: no pings.
        pong_timeout: seconds to answer a ping with its payload; ``None``: never disconnect.
        max_connection_age: close connections (1000) this long after they
            open; default Binance's 24 h (times ``time_scale``); ``None``: never.
        time_scale: multiplies the defaults of ``max_connection_age``,
            ``listen_key_validity`` and ``api_window``, and the ban duration
            (1e-5 makes the 24 h cut 0.86 s).
        error_shape: ``"wire"`` (``{"error": {...}, "id": N}`` then a close,
            as seen on the wire) or ``"docs"`` (``{"code", "msg", "id"}``,
            connection kept open, as documented).
        api_keys: API keys the listen key endpoints accept; when given, the
            REST server runs (:attr:`rest_url`).
        listen_key_validity: seconds a listen key lives without a keepalive
            (default 60 minutes times ``time_scale``).
        api_weight_limit: ``REQUEST_WEIGHT`` per window on the WebSocket API.
        api_window: the weight window, in seconds (default one minute times ``time_scale``).
        ban_after: requests refused with 429 before the IP is banned (418).
        **kwargs: passed to :class:`MockWebSocketServer` (``tls``, ``port``...).

    Raises:
        ValueError: an unknown ``error_shape`` or a ``time_scale`` that is not positive.
    """

    def __init__(
        self,
        *,
        max_incoming_per_second: int | None = MAX_INCOMING_PER_SECOND,
        rate_window: float = 1.0,
        max_streams: int = MAX_STREAMS_PER_CONNECTION,
        ping_interval: float | None = PING_INTERVAL,
        pong_timeout: float | None = PONG_TIMEOUT,
        max_connection_age: float | _Unset | None = _DEFAULT,
        time_scale: float = 1.0,
        error_shape: str = "wire",
        api_keys: Collection[str] | None = None,
        listen_key_validity: float | _Unset = _DEFAULT,
        api_weight_limit: int = API_WEIGHT_LIMIT,
        api_window: float | _Unset = _DEFAULT,
        ban_after: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if error_shape not in ("wire", "docs"):
            raise ValueError(f"error_shape must be 'wire' or 'docs', got {error_shape!r}")
        if not time_scale > 0:
            raise ValueError(f"time_scale must be positive, got {time_scale!r}")

        self.max_incoming_per_second = max_incoming_per_second
        self.rate_window = rate_window
        self.max_streams = max_streams
        self.time_scale = time_scale
        self.ping_interval = ping_interval
        self.pong_timeout = pong_timeout
        self.max_connection_age: float | None = (
            MAX_CONNECTION_AGE * time_scale if isinstance(max_connection_age, _Unset) else max_connection_age
        )
        self.error_shape = error_shape
        self.api_keys = frozenset(api_keys or ())
        self.listen_key_validity: float = (
            LISTEN_KEY_VALIDITY * time_scale if isinstance(listen_key_validity, _Unset) else listen_key_validity
        )
        self.api_weight_limit = api_weight_limit
        self.api_window: float = API_WINDOW * time_scale if isinstance(api_window, _Unset) else api_window
        self.ban_after = ban_after
        self.ban_duration = API_BAN_DURATION * time_scale
        self.control_messages: list[dict[str, Any]] = []
        """Every decoded control message received on stream connections, in order."""
        self.api_requests: list[dict[str, Any]] = []
        """Every decoded WebSocket API request, in order."""
        self.violations: list[RateViolation] = []
        """Rate limit violations, in order."""
        self.pings_sent = 0
        """Pings the server sent."""
        self.pong_timeouts = 0
        """Connections closed for a missing pong."""
        self.rest_calls: list[RestCall] = []
        """Listen key REST calls, in order."""
        self.api_weight_used = 0
        """``REQUEST_WEIGHT`` used in the current API window."""
        self.api_methods: dict[str, Callable[[dict[str, Any]], Any]] = {
            "ping": lambda params: {},
            "time": lambda params: {"serverTime": int(time.time() * 1000)},
            "exchangeInfo": lambda params: {"timezone": "UTC", "symbols": []},
        }
        """WebSocket API methods: name -> ``fn(params) -> result``."""
        self.api_weights: dict[str, int] = {"ping": 1, "time": 1, "exchangeInfo": 20}
        """WebSocket API request weights (1 for methods not listed)."""
        # Guards BinanceSession fields shared by the connection, receive and timer threads.
        self._session_lock = threading.Lock()
        # Guards _listen_keys, the API weight window and the ban (REST, connection and timer threads).
        self._keys_lock = threading.Lock()
        self._listen_keys: dict[str, _ListenKey] = {}
        self._api_window_start = 0.0
        self._api_violations = 0
        self._banned_until = 0.0  # time.time()
        self._rest: http.server.ThreadingHTTPServer | None = None
        self._rest_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> BinanceEmulator:
        """Start the WebSocket server, and the listen key REST server when ``api_keys`` were given."""
        super().start()
        if self.api_keys:
            self._start_rest()
        return self

    def stop(self) -> None:
        """Stop both servers and join their threads."""
        rest, self._rest = self._rest, None
        if rest is not None:
            rest.shutdown()
            rest.server_close()
        if self._rest_thread is not None:
            self._rest_thread.join(2.0)
        with self._keys_lock:
            for record in self._listen_keys.values():
                if record.timer is not None:
                    record.timer.cancel()
        super().stop()

    @property
    def rest_url(self) -> str:
        """``http://127.0.0.1:<port>``: the futures REST base serving the listen key endpoints.

        Raises:
            RuntimeError: no ``api_keys`` were given (no REST server runs).
        """
        if self._rest is None:
            raise RuntimeError("the REST server runs only with api_keys=[...]")
        port = self._rest.server_address[1]
        return f"http://{self.host}:{port}"

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

    @property
    def listen_keys(self) -> list[str]:
        """The listen keys alive now."""
        with self._keys_lock:
            return list(self._listen_keys)

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

        The trade id ``t`` (``a`` for ``@aggTrade``) counts from 1 across the
        feed, whatever the connections: a client that rotates or reconnects
        can prove it lost nothing by the ids it saw. The price is ``50000 + t``.
        """
        symbol = stream.split("@", 1)[0].upper()
        aggregate = stream.endswith("@aggTrade")

        def tick(seq: int) -> None:
            now = int(time.time() * 1000)
            event: dict[str, Any] = {"e": "aggTrade" if aggregate else "trade", "E": now, "s": symbol}
            event["a" if aggregate else "t"] = seq
            event.update({"p": f"{50_000 + seq:.2f}", "q": "0.001", "T": now, "m": False})
            if not aggregate:
                event["M"] = True
            self.publish(stream, event)

        return self.start_feed(tick, interval, count)

    def server_shutdown(self, conn: MockConnection | None = None, *, close_after: float | None = None) -> int:
        """Send ``serverShutdown`` to ``conn`` or every connection, and close them ``close_after`` later.

        The event is ``{"e": "serverShutdown", "E": <ms>}`` on raw streams,
        ``{"stream": "!serverShutdown", "data": {...}}`` on combined ones and
        ``{"event": {...}}`` on the WebSocket API (PROTOCOLS.md).

        Args:
            conn: one connection; None for every open one.
            close_after: seconds (real, not scaled) before closing with 1001;
                None keeps the connections open.

        Returns:
            How many connections got the event.
        """
        event = {"e": "serverShutdown", "E": int(time.time() * 1000)}
        sent = 0
        for c in [conn] if conn is not None else self.connections:
            with self._session_lock:
                session = self.session(c)
                combined, api = session.combined, session.api
            wrapped: dict[str, Any] = event
            if api:
                wrapped = {"event": event}
            elif combined:
                wrapped = {"stream": "!serverShutdown", "data": event}
            try:
                c.send(wrapped)
                sent += 1
            except ConnectionClosed:
                continue
            if close_after is not None:
                c.call_later(close_after, functools.partial(c.close, 1001, "server shutdown", wait=False))
        return sent

    def publish_user_event(self, event: Any, listen_key: str | None = None) -> int:
        """Send ``event`` to the user data connections of ``listen_key`` (None: every one).

        Returns:
            The number of connections it was sent to.
        """
        sent = 0
        for conn in self.connections:
            with self._session_lock:
                key = self.session(conn).listen_key
            if key is None or (listen_key is not None and key != listen_key):
                continue
            try:
                conn.send(event)
                sent += 1
            except ConnectionClosed:
                pass
        return sent

    def expire_listen_key(self, listen_key: str | None = None, *, notify: bool = True) -> list[str]:
        """Let ``listen_key`` (None: every live key) lapse now.

        Args:
            listen_key: the key; None for every live key.
            notify: send ``listenKeyExpired`` to its connections (False: the
                key just disappears, as when the event is lost).

        Returns:
            The keys that expired.
        """
        with self._keys_lock:
            keys = [listen_key] if listen_key is not None else list(self._listen_keys)
        return [key for key in keys if self._expire(key, notify=notify)]

    # ------------------------------------------------------------------ server hooks

    def check_handshake(self, path: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
        parts = urlsplit(path)
        if parts.path in ("/ws", "/ws/", "/ws-api/v3"):
            return None
        if parts.path == "/stream":
            names = [s for s in parse_qs(parts.query).get("streams", [""])[0].split("/") if s]
            bad = [s for s in names if not is_valid_stream(s)]
            return (400, f"Invalid request: invalid stream {bad[0]!r}\n") if bad else None
        if parts.path.startswith("/ws/") and parts.path.count("/") == 2:
            target = parts.path[len("/ws/") :]
            if is_valid_stream(target):
                return None
            if _LISTEN_KEY_RE.fullmatch(target):
                with self._keys_lock:
                    known = target in self._listen_keys
                return None if known else (400, "Invalid listen key\n")
            return (400, f"Invalid request: invalid stream {target!r}\n")
        return (404, "Not Found\n")

    def connection_opened(self, conn: MockConnection) -> None:
        parts = urlsplit(conn.path)
        session = self.session(conn)
        with self._session_lock:
            if parts.path == "/stream":
                session.combined = True
                names = parse_qs(parts.query).get("streams", [""])[0]
                session.streams = [s for s in names.split("/") if s][: self.max_streams]
            elif parts.path == "/ws-api/v3":
                session.api = True
            elif parts.path.startswith("/ws/") and parts.path != "/ws/":
                target = parts.path[len("/ws/") :]
                if is_valid_stream(target):
                    session.streams = [target]
                else:
                    session.listen_key = target
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
        if kind not in ("text", "binary", "ping", "pong") or self.max_incoming_per_second is None or session.api:
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
        session = self.session(conn)
        if session.api:
            return self._api_request(conn, message)
        try:
            return self._control(conn, session, message)
        except _Refusal as refusal:
            return self._refuse(conn, refusal)

    # ------------------------------------------------------------------ stream control

    def _refuse(self, conn: MockConnection, refusal: _Refusal) -> Any:
        if self.error_shape == "docs":
            return {"code": refusal.code, "msg": refusal.msg, "id": refusal.request_id}
        # As seen on the wire: the error nested under "error", then a close.
        try:
            conn.send({"error": {"code": refusal.code, "msg": refusal.msg}, "id": refusal.request_id})
        except ConnectionClosed:
            return None
        conn.close(ERROR_CLOSE_CODE, "Invalid request", wait=False)
        return None

    def _control(self, conn: MockConnection, session: BinanceSession, message: Message) -> Any:
        try:
            request = json.loads(message)
        except ValueError as exc:
            raise _Refusal(INVALID_JSON, f"Invalid JSON: {exc}") from None
        if not isinstance(request, dict):
            raise _Refusal(INVALID_REQUEST, "Invalid request: expected an object")
        with self._cond:
            self.control_messages.append(request)
        request_id = request.get("id")
        if request_id is not None and (
            isinstance(request_id, bool)
            or not isinstance(request_id, (int, str))
            or (isinstance(request_id, str) and len(request_id) > MAX_ID_LENGTH)
        ):
            raise _Refusal(
                INVALID_REQUEST,
                f"Invalid request: request ID must be an integer or a string of at most {MAX_ID_LENGTH} characters",
            )
        method = request.get("method")
        params = request.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            return self._subscribe(session, method, params, request_id)
        if method == "LIST_SUBSCRIPTIONS":
            with self._session_lock:
                return {"result": list(session.streams), "id": request_id}
        if method in ("SET_PROPERTY", "GET_PROPERTY"):
            if not isinstance(params, list) or not params or params[0] != "combined":
                raise _Refusal(UNKNOWN_PROPERTY, "Unknown property", request_id)
            if method == "GET_PROPERTY":
                with self._session_lock:
                    return {"result": session.combined, "id": request_id}
            if len(params) != 2 or not isinstance(params[1], bool):
                raise _Refusal(INVALID_VALUE_TYPE, "Invalid value type: expected Boolean", request_id)
            with self._session_lock:
                session.combined = params[1]
            return {"result": None, "id": request_id}
        raise _Refusal(INVALID_REQUEST, f"Invalid request: unknown method {method!r}", request_id)

    def _subscribe(self, session: BinanceSession, method: str, params: Any, request_id: Any) -> Any:
        if not isinstance(params, list):
            raise _Refusal(INVALID_REQUEST, "Invalid request: params must be an array", request_id)
        for name in params:
            if not isinstance(name, str):
                raise _Refusal(INVALID_VALUE_TYPE, "Invalid value type: expected String", request_id)
            if not is_valid_stream(name):
                raise _Refusal(INVALID_REQUEST, f"Invalid request: invalid stream {name!r}", request_id)
        with self._session_lock:
            if method == "SUBSCRIBE":
                new = [s for s in dict.fromkeys(params) if s not in session.streams]
                if len(session.streams) + len(new) > self.max_streams:
                    raise _Refusal(
                        INVALID_REQUEST, f"Invalid request: too many streams (max {self.max_streams})", request_id
                    )
                session.streams.extend(new)
            else:
                session.streams = [s for s in session.streams if s not in params]
        with self._cond:
            self._cond.notify_all()
        return {"result": None, "id": request_id}

    # ------------------------------------------------------------------ WebSocket API

    def _rate_limits(self) -> list[dict[str, Any]]:
        return [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": self.api_weight_limit,
                "count": self.api_weight_used,
            }
        ]

    def _api_request(self, conn: MockConnection, message: Message) -> Any:
        try:
            request = json.loads(message)
        except ValueError:
            return {"id": None, "status": 400, "error": {"code": -1100, "msg": "Invalid JSON."}}
        if not isinstance(request, dict):
            return {"id": None, "status": 400, "error": {"code": -1100, "msg": "Expected an object."}}
        with self._cond:
            self.api_requests.append(request)
            self._cond.notify_all()
        request_id = request.get("id")
        method = request.get("method")
        params = request.get("params") or {}
        now = time.time()
        with self._keys_lock:
            window = math.floor(now / self.api_window) * self.api_window
            if window > self._api_window_start:
                self._api_window_start = window
                self.api_weight_used = 0
            if now < self._banned_until:
                retry_at = self._banned_until
                refusal: tuple[int, int, str] | None = (
                    418,
                    -1003,
                    f"Way too much request weight used; IP banned until {int(retry_at * 1000)}.",
                )
            else:
                self.api_weight_used += self.api_weights.get(str(method), 1)
                refusal = None
                retry_at = window + self.api_window
                if self.api_weight_used > self.api_weight_limit:
                    self._api_violations += 1
                    if self._api_violations > self.ban_after:
                        self._banned_until = retry_at = now + self.ban_duration
                        refusal = (418, -1003, f"IP banned until {int(retry_at * 1000)}.")
                    else:
                        refusal = (
                            429,
                            -1003,
                            f"Too much request weight used; current limit is {self.api_weight_limit} request "
                            "weight per 1 MINUTE. Please use WebSocket Streams for live updates.",
                        )
            limits = self._rate_limits()
        if refusal is not None:
            status, code, msg = refusal
            data = {"serverTime": int(now * 1000), "retryAfter": int(retry_at * 1000)}
            error = {"code": code, "msg": msg, "data": data}
            return {"id": request_id, "status": status, "error": error, "rateLimits": limits}
        handler = self.api_methods.get(str(method))
        if handler is None:
            error = {"code": -1102, "msg": f"Unknown method {method!r}."}
            return {"id": request_id, "status": 400, "error": error, "rateLimits": limits}
        return {"id": request_id, "status": 200, "result": handler(params), "rateLimits": limits}

    # ------------------------------------------------------------------ listen keys

    def _start_rest(self) -> None:
        emulator = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                emulator._rest_call(self, "POST")

            def do_PUT(self) -> None:
                emulator._rest_call(self, "PUT")

            def do_DELETE(self) -> None:
                emulator._rest_call(self, "DELETE")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # tests read rest_calls instead

        server = http.server.ThreadingHTTPServer((self.host, 0), Handler)
        server.daemon_threads = True
        self._rest = server
        # Daemon so a test that forgets stop() cannot hang exit; stop() joins it.
        self._rest_thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"mock-ws-rest-{self.port}", daemon=True
        )
        self._rest_thread.start()

    def _rest_call(self, handler: http.server.BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        if length:
            handler.rfile.read(length)
        api_key = handler.headers.get("X-MBX-APIKEY", "")
        status, body, key = self._listen_key_call(method, urlsplit(handler.path).path, api_key)
        # Recorded before the answer goes out: a client that got its answer
        # must find the call in rest_calls.
        with self._cond:
            self.rest_calls.append(RestCall(method, status, key, api_key in self.api_keys, time.monotonic()))
            self._cond.notify_all()
        payload = json.dumps(body).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _listen_key_call(self, method: str, path: str, api_key: str) -> tuple[int, Any, str | None]:
        if path != LISTEN_KEY_PATH:
            return 404, {"code": -1000, "msg": "Not found"}, None
        if api_key not in self.api_keys:
            return 401, {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}, None
        now = time.monotonic()
        with self._keys_lock:
            record = next((r for r in self._listen_keys.values() if r.api_key == api_key), None)
            if method == "POST":
                # "If there is an active listenKey, it will return the active
                # listenKey and extend its validity for 60 minutes."
                if record is None:
                    key = secrets.token_hex(32)  # 64 characters, like Binance's
                    record = self._listen_keys[key] = _ListenKey(key, api_key, now)
                self._extend(record, now)
                return 200, {"listenKey": record.key}, record.key
            if record is None:
                return 400, {"code": -1125, "msg": "This listenKey does not exist."}, None
            if method == "PUT":
                self._extend(record, now)
                return 200, {"listenKey": record.key}, record.key
            del self._listen_keys[record.key]
            if record.timer is not None:
                record.timer.cancel()
        for conn in self.connections:
            if self.session(conn).listen_key == record.key:
                conn.close(1000, "listen key deleted", wait=False)
        return 200, {}, record.key

    def _extend(self, record: _ListenKey, now: float) -> None:
        assert self._keys_lock.locked()
        record.expires_at = now + self.listen_key_validity
        if record.timer is not None:
            record.timer.cancel()
        record.timer = self._scheduler.call_later(self.listen_key_validity, functools.partial(self._lapse, record.key))

    def _lapse(self, key: str) -> None:
        """Timer thread: the key's validity ran out."""
        self._expire(key)

    def _expire(self, key: str, *, notify: bool = True) -> bool:
        with self._keys_lock:
            record = self._listen_keys.pop(key, None)
        if record is None:
            return False
        if record.timer is not None:
            record.timer.cancel()
        if notify:
            # Binance USDⓈ-M futures, "Event: User Data Stream Expired".
            self.publish_user_event({"e": "listenKeyExpired", "E": int(time.time() * 1000), "listenKey": key}, key)
        with self._cond:
            self._cond.notify_all()
        return True

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

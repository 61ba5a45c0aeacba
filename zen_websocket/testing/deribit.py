"""A Deribit API v2 emulator (JSON-RPC 2.0 over WebSocket) for client tests.

It implements what a WebSocket client library exercises, with Deribit's
rules enforced: heartbeats with ``test_request`` and a deadline to answer
them, authentication (client credentials, client signature, refresh token)
with tokens that expire and die with their connection, public and private
subscriptions to channels that exist (a fixed list of instruments), the
credit-based rate limit (10028, then the session ends), the 32 kB frame
limit (-32600) and JSON-RPC errors. Trading methods are not emulated; add
your own with :meth:`DeribitEmulator.register_method`.

Source for every constant: Deribit API v2 documentation (docs.deribit.com),
summarised in the project's PROTOCOLS.md.

Test speed: Deribit's times are seconds to minutes. Every one of them is a
constructor argument (``min_heartbeat_interval``, ``test_request_timeout``,
``expires_in``, the credit bucket's numbers), so a test runs them in
milliseconds without touching a module constant; a client is told the lower
heartbeat minimum with ``heartbeat_config={"type": "deribit", "interval": ...,
"min_interval": emulator.min_heartbeat_interval}`` (or the Deribit adapter's
``heartbeat_min_interval=``).

Example::

    from zen_websocket.testing import DeribitEmulator

    with DeribitEmulator(credentials={"my_id": "my_secret"}, min_heartbeat_interval=0.01) as deribit:
        ...  # client connects to deribit.url, calls public/auth then private/subscribe
        deribit.wait_for(lambda: "user.orders.any.any.raw" in deribit.all_subscriptions)
        deribit.publish("user.orders.any.any.raw", {"order_id": "1"})
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from websockets.exceptions import ConnectionClosed

from .server import Message, MockConnection, MockWebSocketServer, StreamHandle, Timer

__all__ = [
    "DeribitEmulator",
    "DeribitSession",
    "CreditBucket",
    "RpcError",
    "INSTRUMENTS",
    "INDEXES",
    "channel_exists",
    "signature_for",
]

# JSON-RPC / Deribit error codes (docs.deribit.com, "Error codes"; PROTOCOLS.md).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600  # also "request entity too large": frames over 32 kB
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
TOO_MANY_REQUESTS = 10028
INVALID_CREDENTIALS = 13004
UNAUTHORIZED = 13009
VALUE_REQUIRED = 13010

# Deribit: "interval" of public/set_heartbeat is an integer, at least 10 seconds.
MIN_HEARTBEAT_INTERVAL = 10.0
# Deribit rate limits (non-matching-engine requests): 500 credits per request,
# 50,000 credits max, refilled at 10,000 credits/s (docs.deribit.com, "Rate Limits").
REQUEST_COST = 500
BUCKET_CAPACITY = 50_000
REFILL_PER_SECOND = 10_000
# Deribit refuses frames over 32 kB with -32600 (PROTOCOLS.md), counted here
# as 32 KiB of UTF-8.
MAX_FRAME_BYTES = 32 * 1024
# A real refresh_token is 214 characters (the recorded www.deribit.com session
# of issue 10): long enough that a log line cut at 500 characters can hold most
# of one, which is what the secret-masking tests need to see.
TOKEN_LENGTH = 214

API_VERSION = "1.2.26"

#: The instruments whose channels exist (a fixed list: perpetuals and spot
#: pairs named as on docs.deribit.com). Pass ``instruments=`` to add others.
INSTRUMENTS = frozenset(
    {
        "BTC-PERPETUAL",
        "ETH-PERPETUAL",
        "BTC_USDC-PERPETUAL",
        "ETH_USDC-PERPETUAL",
        "SOL_USDC-PERPETUAL",
        "BTC_USDC",
        "ETH_USDC",
        "ETH_BTC",
    }
)
#: The price indexes whose channels exist (``deribit_price_index.btc_usd``...).
INDEXES = frozenset({"btc_usd", "eth_usd", "btc_usdc", "eth_usdc", "sol_usdc", "eth_btc"})

# Channel names, docs.deribit.com "Subscriptions": each shape is a tuple of
# literal segments and {placeholders}; a channel exists when it matches one
# shape with every placeholder taking an allowed value.
_CHANNEL_SHAPES: tuple[tuple[str, ...], ...] = (
    ("announcements",),
    ("platform_state",),
    ("book", "{instrument}", "{interval}"),
    ("book", "{instrument}", "{group}", "{depth}", "{interval}"),
    ("chart", "trades", "{instrument}", "{resolution}"),
    ("deribit_price_index", "{index}"),
    ("deribit_price_ranking", "{index}"),
    ("deribit_volatility_index", "{index}"),
    ("estimated_expiration_price", "{index}"),
    ("incremental_ticker", "{instrument}"),
    ("instrument", "state", "{kind}", "{currency}"),
    ("markprice", "options", "{index}"),
    ("perpetual", "{instrument}", "{interval}"),
    ("quote", "{instrument}"),
    ("ticker", "{instrument}", "{interval}"),
    ("trades", "{instrument}", "{interval}"),
    ("trades", "{kind}", "{currency}", "{interval}"),
    ("user", "access_log"),
    ("user", "lock"),
    ("user", "changes", "{instrument}", "{interval}"),
    ("user", "changes", "{kind}", "{currency}", "{interval}"),
    ("user", "orders", "{instrument}", "{interval}"),
    ("user", "orders", "{kind}", "{currency}", "{interval}"),
    ("user", "portfolio", "{currency_lower}"),
    ("user", "trades", "{instrument}", "{interval}"),
    ("user", "trades", "{kind}", "{currency}", "{interval}"),
)
_CURRENCIES = frozenset({"BTC", "ETH", "USDC", "USDT", "EURR", "any"})
_PLACEHOLDER_VALUES: dict[str, frozenset[str]] = {
    "interval": frozenset({"raw", "100ms", "agg2"}),
    "group": frozenset({"none", "1", "2", "5", "10", "25", "100", "250"}),
    "depth": frozenset({"1", "10", "20"}),
    "resolution": frozenset({"1", "3", "5", "10", "15", "30", "60", "120", "180", "360", "720", "1D"}),
    "kind": frozenset({"future", "option", "spot", "future_combo", "option_combo", "any"}),
    "currency": _CURRENCIES,
    "currency_lower": frozenset(c.lower() for c in _CURRENCIES),
}


def channel_exists(
    channel: str,
    instruments: Iterable[str] = INSTRUMENTS,
    indexes: Iterable[str] = INDEXES,
) -> bool:
    """Whether ``channel`` names a Deribit channel of an instrument (or index) that exists.

    Args:
        channel: e.g. ``"book.BTC-PERPETUAL.100ms"``, ``"user.orders.any.any.raw"``.
        instruments: the instrument names that exist.
        indexes: the index names that exist.

    Returns:
        True when the channel matches one of Deribit's channel shapes with
        known values (instrument, index, interval, kind, currency...).
    """
    values = {**_PLACEHOLDER_VALUES, "instrument": frozenset(instruments), "index": frozenset(indexes)}
    parts = channel.split(".")
    for shape in _CHANNEL_SHAPES:
        if len(shape) == len(parts) and all(
            part in values[segment[1:-1]] if segment.startswith("{") else part == segment
            for segment, part in zip(shape, parts, strict=True)
        ):
            return True
    return False


SAME_AS_INTERVAL = -1.0
"""``test_request_timeout`` default: answer within one heartbeat interval."""


class RpcError(Exception):
    """A JSON-RPC error to answer with; raise it from a registered method."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{code} {message}")
        self.code = code
        self.message = message
        self.data = data


class CreditBucket:
    """Deribit-style credit bucket: pure logic, the clock is injected.

    Example::

        bucket = CreditBucket(capacity=1000, refill_per_second=500)
        bucket.try_consume(500)  # True
    """

    def __init__(
        self,
        capacity: float = BUCKET_CAPACITY,
        refill_per_second: float = REFILL_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.capacity = capacity
        self.refill_per_second = refill_per_second
        self._clock = clock
        self._credits = capacity
        self._updated = clock()

    @property
    def credits(self) -> float:
        """Credits available now."""
        self._refill()
        return self._credits

    def _refill(self) -> None:
        now = self._clock()
        self._credits = min(self.capacity, self._credits + (now - self._updated) * self.refill_per_second)
        self._updated = now

    def try_consume(self, cost: float) -> bool:
        """Take ``cost`` credits if available; returns whether it did."""
        self._refill()
        if self._credits < cost:
            return False
        self._credits -= cost
        return True


@dataclass
class DeribitSession:
    """Per-connection emulator state (``conn.session["deribit"]``)."""

    channels: set[str] = field(default_factory=set)
    client_id: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    token_expires_at: float | None = None
    heartbeat_interval: float | None = None
    heartbeat_timer: Timer | None = None
    heartbeats_sent: int = 0
    test_requests_sent: int = 0
    """``test_request`` notifications sent; the n-th one is test_request number n."""
    test_requests_answered: int = 0
    """``public/test`` calls that answered an outstanding ``test_request``."""
    answered_through: int = 0
    """The number of the last ``test_request`` a ``public/test`` came after."""
    bucket: CreditBucket | None = None
    scope: str = "connection mainaccount"

    @property
    def pending_test_request(self) -> bool:
        """Whether a ``test_request`` was sent and no ``public/test`` came after it."""
        return self.answered_through < self.test_requests_sent

    @property
    def authenticated(self) -> bool:
        """Whether the connection holds an unexpired token."""
        return self.access_token is not None and (
            self.token_expires_at is None or time.monotonic() < self.token_expires_at
        )


def _is_private_channel(channel: str) -> bool:
    # Deribit: user.* channels and ".raw" (non-aggregated) feeds need authentication.
    return channel.startswith("user.") or channel.endswith(".raw")


def signature_for(secret: str, timestamp: int, nonce: str, data: str = "") -> str:
    """The ``client_signature`` Deribit expects: hex HMAC-SHA256 of ``timestamp\\nnonce\\ndata``."""
    payload = f"{timestamp}\n{nonce}\n{data}".encode()
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


RpcMethod = Callable[[MockConnection, dict[str, Any]], Any]


def _request_id(message: Message) -> Any:
    """The ``id`` of a request frame, or None when it has none or is not JSON."""
    try:
        request = json.loads(message)
    except (ValueError, RecursionError):
        return None
    return request.get("id") if isinstance(request, dict) else None


class DeribitEmulator(MockWebSocketServer):
    """Deribit API v2 over WebSocket, enough for client tests.

    Methods: ``public/test``, ``public/set_heartbeat``,
    ``public/disable_heartbeat``, ``public/auth``, ``public/subscribe``,
    ``private/subscribe``, ``public/unsubscribe``, ``private/unsubscribe``,
    ``public/unsubscribe_all``, ``private/unsubscribe_all``; anything else
    answers -32601 unless added with :meth:`register_method`.

    Rules enforced, as on Deribit (PROTOCOLS.md):

    * **Auth**: ``private/*`` methods need ``public/auth`` on this connection
      (13009 otherwise); wrong credentials or a bad signature are 13004.
      Tokens expire after ``expires_in`` seconds (13009 again), a
      ``refresh_token`` grant works once per refresh token, and every token
      dies with its connection.
    * **Heartbeat deadline**: a ``test_request`` not followed by a
      ``public/test`` within ``test_request_timeout`` closes the connection
      (code 1000, reason ``"test_request not answered"``); one that was
      answered never does, however often they come.
    * **Credits**: over the bucket a request is answered 10028
      ``too_many_requests`` and the session ends (the connection is closed,
      code 1000, reason ``"too_many_requests"``).
    * **Frames over 32 kB** are answered -32600 and not executed.
    * **Only real channels**: a subscribe grants only channels of Deribit's
      shapes (``book.BTC-PERPETUAL.100ms``, ``user.orders.any.any.raw``...)
      whose instrument is in ``instruments`` (index in ``indexes``); others
      are left out of the result, as Deribit answers ``"result": []``
      for an unknown instrument.
    * ``public/set_heartbeat`` takes an integer of at least 10 seconds.

    Choices where Deribit's behaviour is not spelled out:

    * ``public/subscribe`` silently leaves private channels (``user.*``,
      ``*.raw``) out of its result. Channels in ``fail_channels`` are always
      left out of the result.
    * The rate limit is per connection (Deribit's is per sub-account).
    * A frame over the limit is still parsed to answer with its id.

    Args:
        credentials: ``client_id -> client_secret`` accepted by ``public/auth``.
        expires_in: Access token lifetime in seconds (may be fractional for tests).
        min_heartbeat_interval: Smallest ``set_heartbeat`` interval accepted
            (Deribit: 10 s, an integer). Lower it so tests run in
            milliseconds; below 1 s fractional intervals are accepted.
        test_request_every: Every n-th heartbeat tick is a ``test_request``
            (1: all of them; ``None``: never).
        test_request_timeout: Seconds to answer a ``test_request``; the
            default (``SAME_AS_INTERVAL``) is the heartbeat interval;
            ``None`` never closes.
        rate_limit_enabled: Enforce the credit bucket.
        request_cost, bucket_capacity, refill_per_second: Credit bucket parameters.
        close_on_rate_limit: Close the connection after answering 10028
            (Deribit terminates the session); False keeps it open.
        max_frame_bytes: Larger frames are refused with -32600 (None: no limit).
        instruments, indexes: The instruments and indexes whose channels exist.
        check_channels: Grant only channels that exist; False grants any name
            (for tests that use made-up channel names).
        token_length: Length of the access and refresh tokens handed out.
        fail_channels: Channels never granted by subscribe.
        delay: Seconds before every response is sent (responses are sent
            from the timer thread, in order of due time).
        method_delays: Per-method delays; responses with different delays
            overtake each other, which tests out-of-order replies.
        ignore_methods: Methods recorded but never answered (request timeouts).
        **kwargs: Passed to :class:`MockWebSocketServer` (``tls``, ``port``...).
    """

    def __init__(
        self,
        *,
        credentials: Mapping[str, str] | None = None,
        expires_in: float = 900,
        min_heartbeat_interval: float = MIN_HEARTBEAT_INTERVAL,
        test_request_every: int | None = 2,
        test_request_timeout: float | None = SAME_AS_INTERVAL,
        rate_limit_enabled: bool = True,
        request_cost: float = REQUEST_COST,
        bucket_capacity: float = BUCKET_CAPACITY,
        refill_per_second: float = REFILL_PER_SECOND,
        close_on_rate_limit: bool = True,
        max_frame_bytes: int | None = MAX_FRAME_BYTES,
        instruments: Iterable[str] = INSTRUMENTS,
        indexes: Iterable[str] = INDEXES,
        check_channels: bool = True,
        token_length: int = TOKEN_LENGTH,
        fail_channels: Iterable[str] = (),
        delay: float = 0.0,
        method_delays: Mapping[str, float] | None = None,
        ignore_methods: Iterable[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.credentials = dict(credentials if credentials is not None else {"test_client_id": "test_client_secret"})
        self.expires_in = expires_in
        self.min_heartbeat_interval = min_heartbeat_interval
        self.test_request_every = test_request_every
        self.test_request_timeout = test_request_timeout
        self.rate_limit_enabled = rate_limit_enabled
        self.request_cost = request_cost
        self.bucket_capacity = bucket_capacity
        self.refill_per_second = refill_per_second
        self.close_on_rate_limit = close_on_rate_limit
        self.max_frame_bytes = max_frame_bytes
        self.instruments = set(instruments)
        self.indexes = set(indexes)
        self.check_channels = check_channels
        self.token_length = token_length
        self.fail_channels = set(fail_channels)
        self.delay = delay
        self.method_delays = dict(method_delays or {})
        self.ignore_methods = set(ignore_methods)
        self.requests: list[dict[str, Any]] = []
        """Every JSON-RPC request received, in order (decoded)."""
        self.auth_log: list[tuple[int, str, bool]] = []
        """``(connection id, grant_type, success)`` for each ``public/auth``."""
        self.heartbeat_timeouts = 0
        """Connections closed for not answering a ``test_request``."""
        self.rate_limited = 0
        """Requests answered with 10028."""
        self.unauthorized = 0
        """Requests answered with 13009 (not authenticated, or the token expired)."""
        self.oversized = 0
        """Frames refused with -32600 for being over ``max_frame_bytes``."""
        self.tokens_issued: list[str] = []
        """Every access and refresh token handed out, in order (for secret-masking tests)."""
        self._methods: dict[str, RpcMethod] = {
            "public/test": self._public_test,
            "public/set_heartbeat": self._set_heartbeat,
            "public/disable_heartbeat": self._disable_heartbeat,
            "public/auth": self._auth,
            "public/subscribe": self._public_subscribe,
            "private/subscribe": self._private_subscribe,
            "public/unsubscribe": self._unsubscribe,
            "private/unsubscribe": self._private_unsubscribe,
            "public/unsubscribe_all": self._unsubscribe_all,
            "private/unsubscribe_all": self._private_unsubscribe_all,
        }
        # Guards the session objects' fields that both the connection thread
        # and the timer thread touch (pending_test_request, counters, channels).
        self._session_lock = threading.Lock()

    # ------------------------------------------------------------------ public helpers

    def register_method(self, name: str, fn: RpcMethod, *, private: bool = False) -> None:
        """Answer ``name`` with ``fn(conn, params)`` (raise :class:`RpcError` for errors).

        Args:
            private: Require an authenticated connection (13009 otherwise).
        """
        if private:

            def guarded(conn: MockConnection, params: dict[str, Any]) -> Any:
                self._require_auth(conn, params)
                return fn(conn, params)

            self._methods[name] = guarded
        else:
            self._methods[name] = fn

    @staticmethod
    def session(conn: MockConnection) -> DeribitSession:
        """The emulator state of a connection."""
        session = conn.session.get("deribit")
        if session is None:
            session = conn.session["deribit"] = DeribitSession()
        return session

    def subscriptions(self, conn: MockConnection | int) -> set[str]:
        """Channels subscribed on a connection (object, or index in :attr:`all_connections`)."""
        if isinstance(conn, int):
            conn = self.all_connections[conn]
        with self._session_lock:
            return set(self.session(conn).channels)

    @property
    def all_subscriptions(self) -> set[str]:
        """Channels subscribed on any open connection."""
        channels: set[str] = set()
        connections = self.connections  # taken before _session_lock: wait_for() holds _cond while it asks
        with self._session_lock:
            for conn in connections:
                channels |= self.session(conn).channels
        return channels

    def publish(self, channel: str, data: Any) -> int:
        """Send a ``subscription`` notification to every connection subscribed to ``channel``.

        Returns:
            The number of connections notified.
        """
        message = {"jsonrpc": "2.0", "method": "subscription", "params": {"channel": channel, "data": data}}
        sent = 0
        for conn in self.connections:
            with self._session_lock:
                subscribed = channel in self.session(conn).channels
            if subscribed:
                try:
                    conn.send(message)
                    sent += 1
                except ConnectionClosed:
                    pass
        return sent

    def start_ticker(
        self,
        channel: str = "deribit_price_index.btc_usd",
        interval: float = 0.1,
        count: int | None = None,
        base_price: float = 50_000.0,
    ) -> StreamHandle:
        """Publish numbered price updates on ``channel`` every ``interval`` seconds.

        Each update is ``{"index_name", "price", "timestamp", "seq"}`` with
        ``seq`` counting from 1 across the whole feed (so a client that
        reconnects sees a gap) and ``price = base_price + seq``.
        """
        index_name = channel.rsplit(".", 1)[-1]

        def tick(seq: int) -> None:
            self.publish(
                channel,
                {"index_name": index_name, "price": base_price + seq, "timestamp": int(time.time() * 1000), "seq": seq},
            )

        return self.start_feed(tick, interval, count)

    def revoke_refresh_tokens(self) -> int:
        """Invalidate every open connection's refresh token (the next refresh grant is 13004).

        Access tokens stay valid until they expire. Returns the number of
        connections whose refresh token was revoked.
        """
        revoked = 0
        with self._session_lock:
            for conn in self.connections:
                session = self.session(conn)
                if session.refresh_token is not None:
                    session.refresh_token = None
                    revoked += 1
        return revoked

    def expire_access_tokens(self) -> int:
        """Make every open connection's access token expire now (private calls are 13009).

        Returns the number of connections whose token expired.
        """
        expired = 0
        now = time.monotonic()
        with self._session_lock:
            for conn in self.connections:
                session = self.session(conn)
                if session.access_token is not None:
                    session.token_expires_at = now
                    expired += 1
        return expired

    def send_test_request(self, conn: MockConnection | None = None) -> int:
        """Send a ``test_request`` heartbeat now (to ``conn`` or every connection)."""
        conns = [conn] if conn is not None else self.connections
        for c in conns:
            self._send_heartbeat(c, "test_request")
        return len(conns)

    # ------------------------------------------------------------------ server hooks

    def connection_opened(self, conn: MockConnection) -> None:
        session = self.session(conn)
        if self.rate_limit_enabled:
            session.bucket = CreditBucket(self.bucket_capacity, self.refill_per_second)
        super().connection_opened(conn)

    def message_received(self, conn: MockConnection, message: Message) -> Any:
        us_in = int(time.time() * 1_000_000)
        size = len(message.encode("utf-8", "surrogatepass")) if isinstance(message, str) else len(message)
        if self.max_frame_bytes is not None and size > self.max_frame_bytes:
            with self._cond:
                self.oversized += 1
            return self._error_response(
                _request_id(message),
                INVALID_REQUEST,
                "request entity too large",
                us_in,
                {"max_bytes": self.max_frame_bytes},
            )
        try:
            request = json.loads(message)
        except ValueError:
            return self._error_response(None, PARSE_ERROR, "parse_error", us_in)
        if not isinstance(request, dict) or not isinstance(request.get("method"), str):
            return self._error_response(None, -32600, "invalid_request", us_in)
        with self._cond:
            self.requests.append(request)
        method: str = request["method"]
        request_id = request.get("id")
        params = request.get("params") or {}
        if method in self.ignore_methods:
            return None
        session = self.session(conn)
        if session.bucket is not None and not session.bucket.try_consume(self.request_cost):
            with self._cond:
                self.rate_limited += 1
            self._reply(conn, method, self._error_response(request_id, TOO_MANY_REQUESTS, "too_many_requests", us_in))
            if self.close_on_rate_limit:
                # Deribit: "the session is then terminated" (PROTOCOLS.md).
                conn.close(1000, "too_many_requests", wait=False)
            return None
        fn = self._methods.get(method)
        try:
            if fn is None:
                raise RpcError(METHOD_NOT_FOUND, "Method not found")
            if not isinstance(params, dict):
                raise RpcError(INVALID_PARAMS, "Invalid params")
            result = fn(conn, params)
        except RpcError as exc:
            response = self._error_response(request_id, exc.code, exc.message, us_in, exc.data)
        else:
            response = {"jsonrpc": "2.0", "id": request_id, "result": result, **self._timing(us_in)}
        self._reply(conn, method, response)
        return None

    def connection_closed(self, conn: MockConnection) -> None:
        session = self.session(conn)
        # Tokens are connection-scoped: they die with the connection.
        with self._session_lock:
            session.access_token = None
            session.refresh_token = None
        super().connection_closed(conn)

    # ------------------------------------------------------------------ plumbing

    @staticmethod
    def _timing(us_in: int) -> dict[str, Any]:
        us_out = int(time.time() * 1_000_000)
        return {"usIn": us_in, "usOut": us_out, "usDiff": us_out - us_in, "testnet": True}

    def _error_response(self, request_id: Any, code: int, message: str, us_in: int, data: Any = None) -> dict[str, Any]:
        error: dict[str, Any] = {"code": code, "message": message}
        if data is not None:
            error["data"] = data
        return {"jsonrpc": "2.0", "id": request_id, "error": error, **self._timing(us_in)}

    def _reply(self, conn: MockConnection, method: str, response: dict[str, Any]) -> None:
        delay = self.method_delays.get(method, self.delay)
        if delay <= 0:
            conn.send(response)
            return

        def send_later() -> None:
            try:
                conn.send(response)
            except ConnectionClosed:
                pass

        conn.call_later(delay, send_later)

    def _require_auth(self, conn: MockConnection, params: Mapping[str, Any]) -> None:
        session = self.session(conn)
        token = params.get("access_token")
        with self._session_lock:
            if token is not None and token != session.access_token:
                refusal = RpcError(UNAUTHORIZED, "unauthorized", {"reason": "invalid_token"})
            elif not session.authenticated:
                refusal = RpcError(UNAUTHORIZED, "unauthorized")
            else:
                return
        with self._cond:
            self.unauthorized += 1
            self._cond.notify_all()
        raise refusal

    @staticmethod
    def _required(params: Mapping[str, Any], name: str) -> Any:
        if params.get(name) in (None, ""):
            raise RpcError(VALUE_REQUIRED, "value_required", {"param": name, "reason": "value_required"})
        return params[name]

    # ------------------------------------------------------------------ methods

    def _public_test(self, conn: MockConnection, params: dict[str, Any]) -> Any:
        session = self.session(conn)
        with self._session_lock:
            if session.pending_test_request:
                session.answered_through = session.test_requests_sent
                session.test_requests_answered += 1
        if params.get("expected_result") == "exception":
            raise RpcError(11094, "internal_server_error", "expected_result: exception")
        return {"version": API_VERSION}

    def _set_heartbeat(self, conn: MockConnection, params: dict[str, Any]) -> Any:
        interval = self._required(params, "interval")
        # Deribit takes an integer; at test speed (a minimum under a second)
        # fractions are what make sense.
        whole = self.min_heartbeat_interval >= 1
        number = isinstance(interval, int) or (isinstance(interval, float) and not whole)
        if not number or isinstance(interval, bool) or interval < self.min_heartbeat_interval:
            shown = "an integer" if whole else "a number"
            raise RpcError(
                INVALID_PARAMS,
                "Invalid params",
                {"param": "interval", "reason": f"must be {shown} >= {self.min_heartbeat_interval:g}"},
            )
        session = self.session(conn)
        with self._session_lock:
            if session.heartbeat_timer is not None:
                session.heartbeat_timer.cancel()
            session.heartbeat_interval = float(interval)
            session.heartbeats_sent = 0
            session.heartbeat_timer = conn.call_every(float(interval), lambda: self._heartbeat_tick(conn))
        return "ok"

    def _disable_heartbeat(self, conn: MockConnection, params: dict[str, Any]) -> Any:
        session = self.session(conn)
        with self._session_lock:
            if session.heartbeat_timer is not None:
                session.heartbeat_timer.cancel()
            session.heartbeat_timer = None
            session.heartbeat_interval = None
            session.answered_through = session.test_requests_sent  # nothing is owed any more
        return "ok"

    def _heartbeat_tick(self, conn: MockConnection) -> None:
        """Timer thread: one heartbeat or test_request."""
        session = self.session(conn)
        with self._session_lock:
            session.heartbeats_sent += 1
            n = session.heartbeats_sent
        every = self.test_request_every
        kind = "test_request" if every is not None and n % every == 0 else "heartbeat"
        self._send_heartbeat(conn, kind)

    def _send_heartbeat(self, conn: MockConnection, kind: str) -> None:
        session = self.session(conn)
        if kind == "test_request":
            with self._session_lock:
                session.test_requests_sent += 1
                number = session.test_requests_sent
                interval = session.heartbeat_interval
            timeout = self.test_request_timeout
            if timeout == SAME_AS_INTERVAL:
                timeout = interval
            if timeout is not None:
                # The deadline belongs to this test_request, by number: the next
                # one (due at the same moment when the timeout is the interval)
                # must not be mistaken for this one left unanswered.
                conn.call_later(timeout, lambda: self._check_test_request(conn, number))
        try:
            conn.send({"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": kind}})
        except ConnectionClosed:
            pass

    def _check_test_request(self, conn: MockConnection, number: int) -> None:
        """Timer thread: close the connection if test_request ``number`` got no ``public/test`` after it."""
        session = self.session(conn)
        with self._session_lock:
            missed = session.answered_through < number
        if missed and conn.is_open:
            with self._cond:
                self.heartbeat_timeouts += 1
                self._cond.notify_all()
            conn.close(1000, "test_request not answered", wait=False)

    def _auth(self, conn: MockConnection, params: dict[str, Any]) -> Any:
        grant_type = self._required(params, "grant_type")
        session = self.session(conn)
        ok = False
        try:
            if grant_type == "client_credentials":
                client_id = self._required(params, "client_id")
                secret = self._required(params, "client_secret")
                expected = self.credentials.get(client_id)
                if expected is None or not hmac.compare_digest(str(expected), str(secret)):
                    raise RpcError(INVALID_CREDENTIALS, "invalid_credentials")
            elif grant_type == "client_signature":
                client_id = self._required(params, "client_id")
                timestamp = self._required(params, "timestamp")
                nonce = str(params.get("nonce", ""))
                data = str(params.get("data", ""))
                signature = str(self._required(params, "signature"))
                expected = self.credentials.get(client_id)
                if expected is None or not hmac.compare_digest(
                    signature_for(expected, timestamp, nonce, data), signature.lower()
                ):
                    raise RpcError(INVALID_CREDENTIALS, "invalid_credentials")
            elif grant_type == "refresh_token":
                token = self._required(params, "refresh_token")
                with self._session_lock:
                    valid = session.refresh_token is not None and hmac.compare_digest(session.refresh_token, str(token))
                    client_id = session.client_id
                if not valid:
                    raise RpcError(INVALID_CREDENTIALS, "invalid_credentials", {"reason": "invalid refresh_token"})
            else:
                raise RpcError(INVALID_PARAMS, "Invalid params", {"param": "grant_type", "reason": "unsupported"})
            ok = True
        finally:
            with self._cond:
                self.auth_log.append((conn.id, str(grant_type), ok))
                self._cond.notify_all()
        access_token = self._new_token("at-")
        refresh_token = self._new_token("rt-")
        scope = params.get("scope")
        with self._session_lock:
            session.client_id = client_id
            session.access_token = access_token
            session.refresh_token = refresh_token
            session.token_expires_at = time.monotonic() + self.expires_in
            if grant_type != "refresh_token":
                session.scope = f"{scope} mainaccount" if isinstance(scope, str) and scope else "connection mainaccount"
            granted_scope = session.scope
        with self._cond:
            self.tokens_issued += [access_token, refresh_token]
        return {
            "access_token": access_token,
            "expires_in": self.expires_in,
            "refresh_token": refresh_token,
            "scope": granted_scope,
            "token_type": "bearer",
            "enabled_features": [],
        }

    def _new_token(self, prefix: str) -> str:
        body = secrets.token_urlsafe(self.token_length)
        return (prefix + body)[: max(self.token_length, len(prefix) + 8)]

    def _channels_param(self, params: Mapping[str, Any]) -> list[str]:
        channels = self._required(params, "channels")
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            raise RpcError(
                INVALID_PARAMS, "Invalid params", {"param": "channels", "reason": "must be a list of strings"}
            )
        return channels

    def _grants(self, channel: str, private: bool) -> bool:
        if channel in self.fail_channels or (not private and _is_private_channel(channel)):
            return False
        return not self.check_channels or channel_exists(channel, self.instruments, self.indexes)

    def _subscribe(self, conn: MockConnection, channels: list[str], private: bool) -> list[str]:
        granted = [c for c in channels if self._grants(c, private)]
        session = self.session(conn)
        with self._session_lock:
            session.channels.update(granted)
        with self._cond:
            self._cond.notify_all()
        return granted

    def _public_subscribe(self, conn: MockConnection, params: dict[str, Any]) -> Any:
        return self._subscribe(conn, self._channels_param(params), private=False)

    def _private_subscribe(self, conn: MockConnection, params: dict[str, Any]) -> Any:
        self._require_auth(conn, params)
        return self._subscribe(conn, self._channels_param(params), private=True)

    def _unsubscribe(self, conn: MockConnection, params: dict[str, Any]) -> Any:
        channels = self._channels_param(params)
        session = self.session(conn)
        with self._session_lock:
            removed = [c for c in channels if c in session.channels]
            session.channels.difference_update(removed)
        return removed

    def _private_unsubscribe(self, conn: MockConnection, params: dict[str, Any]) -> Any:
        self._require_auth(conn, params)
        return self._unsubscribe(conn, params)

    def _unsubscribe_all(self, conn: MockConnection, params: dict[str, Any]) -> Any:
        with self._session_lock:
            self.session(conn).channels.clear()
        return "ok"

    def _private_unsubscribe_all(self, conn: MockConnection, params: dict[str, Any]) -> Any:
        self._require_auth(conn, params)
        return self._unsubscribe_all(conn, params)

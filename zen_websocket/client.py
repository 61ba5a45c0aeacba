"""The client: one logical connection, kept alive until ``close()``.

Threads (all daemons, named, joined by ``close()``):

- ``zen-ws-recv-<name>``, one per connection: reads frames, answers pings,
  resolves correlated requests, consumes heartbeat traffic and hands every
  other message to the queue or the ``message`` callbacks.
- ``zen-ws-supervisor-<name>``, one per client: while connected it is the
  heartbeat timer (sends heartbeats, declares a silent peer dead, expires
  ``request_async`` deadlines) and sleeps on ``_wake`` in between; when the
  connection is lost it reconnects with backoff, re-runs the ``connect``
  callbacks and restores subscriptions.

Locks (never held while calling user code or telemetry):

- ``_state_lock`` guards ``_state``, ``_conn``, ``_closing``, ``_final``.
- ``_cb_lock`` guards writes to ``_callbacks`` (copy-on-write; readers don't lock).
- ``_hb_lock`` guards the heartbeat monitor's reply/poll bookkeeping.
- ``_count_lock`` guards the send-side counters (sends come from any thread).
- The transport's own send lock serialises whole frames on the socket.

The receive-side counters are written by the receive thread only.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import enum
import functools
import json
import logging
import queue
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from . import jsonrpc, telemetry
from .config import EVENTS, ClientConfig, redact_url
from .errors import (
    CallbackError,
    ConfigError,
    ConnectError,
    ConnectionClosed,
    ConnectionLost,
    HeartbeatTimeout,
    MessageTooLarge,
    NotConnectedError,
    ProtocolError,
    RateLimited,
    RequestTimeout,
    SilenceTimeout,
    SubscriptionError,
    UsageError,
    categorize,
)
from .heartbeat import HeartbeatMonitor
from .reconnect import Backoff
from .subscriptions import SubscriptionSet, get_dialect, plan_restore
from .transport import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, Transport

__all__ = ["Client", "ConnectionState", "connect"]

logger = logging.getLogger(__name__)


class ConnectionState(str, enum.Enum):
    """What ``client.get_state()`` returns; compares equal to its string value."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"

    def __str__(self) -> str:
        return self.value


def _event(name: str) -> tuple[str, ...]:
    return ("zen_websocket", *name.split("."))


EV_CONNECT = _event("client.connect")
EV_DISCONNECT = _event("client.disconnect")
EV_CLOSE = _event("client.close")
EV_ERROR = _event("client.error")
EV_RECEIVED = _event("client.message_received")
EV_SENT = _event("client.message_sent")
EV_OVERFLOW = _event("client.queue_overflow")
EV_CALLBACK_ERROR = _event("client.callback_error")
EV_RECONNECT_ATTEMPT = _event("reconnect.attempt")
EV_RECONNECT_SUCCESS = _event("reconnect.success")
EV_RECONNECT_GIVE_UP = _event("reconnect.give_up")
EV_HB_SENT = _event("heartbeat.sent")
EV_HB_REPLY = _event("heartbeat.reply")
EV_HB_FAILURE = _event("heartbeat.failure")
EV_REQ_START = _event("request.start")
EV_REQ_STOP = _event("request.stop")
EV_REQ_TIMEOUT = _event("request.timeout")
EV_RL_WAIT = _event("rate_limit.wait")
EV_RL_REJECT = _event("rate_limit.reject")
EV_SUB_ADD = _event("subscription.add")
EV_SUB_REMOVE = _event("subscription.remove")
EV_SUB_RESTORE = _event("subscription.restore")
EV_SUB_ERROR = _event("subscription.error")

_CLOSED = object()  # queue sentinel: the client is closed for good

# Values of these JSON keys never reach a debug log line.
_SECRET_JSON = re.compile(
    r'("(?:client_secret|access_token|refresh_token|signature|secret|password|api_?key|apiKey|listenKey)"\s*:\s*)"[^"]*"',
    re.IGNORECASE,
)


def _redact(text: str) -> str:
    return _SECRET_JSON.sub(r'\1"***"', text)


class _MessageQueue:
    """The user's inbox: unbounded, or bounded with an overflow policy.

    A ``queue.SimpleQueue`` underneath (put/get in C, and a blocked ``get``
    is interrupted by Ctrl-C). One producer (the receive thread), one
    consumer (``recv``, enforced by the client).
    """

    def __init__(self, maxsize: int | None, overflow: str) -> None:
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.maxsize = maxsize
        self.overflow = overflow
        # "block": the producer takes a slot per message, the consumer gives it back.
        self._slots = threading.Semaphore(maxsize) if maxsize and overflow == "block" else None

    def put(self, item: Any, stopping: threading.Event) -> Any:
        """Queue ``item``; returns a message that was dropped for it, or ``_CLOSED`` if none."""
        maxsize = self.maxsize
        if maxsize is None:
            self._q.put(item)
            return _CLOSED
        if self._slots is not None:
            # Woken at least every 50 ms only while the queue is full, so
            # that close() never waits on a consumer that stopped reading.
            while not self._slots.acquire(timeout=0.05):
                if stopping.is_set():
                    return item
            self._q.put(item)
            return _CLOSED
        if self._q.qsize() < maxsize:
            self._q.put(item)
            return _CLOSED
        if self.overflow == "drop_newest":
            return item
        try:
            dropped = self._q.get_nowait()
        except queue.Empty:
            dropped = _CLOSED
        self._q.put(item)
        return dropped

    def get(self, timeout: float | None) -> Any:
        item = self._q.get(timeout=timeout)
        if self._slots is not None and item is not _CLOSED:
            self._slots.release()
        return item

    def close(self) -> None:
        self._q.put(_CLOSED)

    def qsize(self) -> int:
        return self._q.qsize()


class _Connection:
    """One physical connection: its transport, receive thread and fate."""

    __slots__ = (
        "close_code",
        "close_reason",
        "established_at",
        "lost",
        "lost_exc",
        "peer_closed",
        "thread",
        "transport",
    )

    def __init__(self, transport: Transport) -> None:
        self.transport = transport
        self.thread: threading.Thread | None = None
        self.lost_exc: BaseException | None = None
        self.lost = threading.Event()  # the receive thread has stopped
        self.peer_closed = threading.Event()  # the peer's close frame arrived
        self.close_code: int | None = None
        self.close_reason = ""
        self.established_at = time.monotonic()


_live_clients: weakref.WeakSet[Client] = weakref.WeakSet()


@atexit.register
def _close_all_at_exit() -> None:
    # Daemon threads would die silently at exit; close politely instead, with
    # a short bound so that a script that forgot close() still exits at once.
    for client in list(_live_clients):
        try:
            client._close(timeout=0.25)
        except Exception:
            logger.exception("closing %r at exit failed", client)


class Client:
    """A WebSocket client that stays connected until you close it.

    Args:
        url: ``ws://`` or ``wss://`` URL.
        **options: see the README's options table (``timeout``, ``headers``,
            ``retry_count``, ``heartbeat_config``, ``max_queue``, ...) and
            ``on_<event>=fn`` callbacks.

    Raises:
        ConfigError: an option is invalid or unknown (it is named).

    Example::

        with zw.connect("wss://test.deribit.com/ws/api/v2") as client:
            client.subscribe(["deribit_price_index.btc_usd"])
            for message in client:
                print(message)
    """

    def __init__(self, url: str, **options: Any) -> None:
        config = ClientConfig.from_options(url, **options)
        self.config = config
        self.name = config.label
        self.url = config.url
        self._debug = config.debug
        self._meta: dict[str, Any] = {"url": redact_url(config.url), "name": config.name}

        self._state_lock = threading.Lock()
        self._state = ConnectionState.DISCONNECTED
        self._conn: _Connection | None = None
        self._closing = False
        self._final = False  # closed for good: by close(), a fatal error or giving up
        self._ever_connected = False
        self._stopping = threading.Event()  # set by close(): interrupts backoff sleeps
        self._wake = threading.Event()  # wakes the supervisor
        self._done = threading.Event()  # set when the client is closed for good
        self._supervisor: threading.Thread | None = None
        self._connecting_ws: Any = None  # the handshake in progress, for close() to abort
        self._final_code: int | None = None
        self._final_reason = ""

        self._cb_lock = threading.Lock()
        self._callbacks: dict[str, tuple[Callable[..., Any], ...]] = {}
        for event, fns in config.callbacks.items():
            self._callbacks[event] = tuple(fns)

        self._queue = _MessageQueue(config.max_queue, config.overflow)
        self._recv_lock = threading.Lock()  # one consumer at a time

        self._correlator = jsonrpc.Correlator()
        self._latency = jsonrpc.LatencyWindow()
        self._sleep_until: float | None = None

        self._subs = SubscriptionSet()
        self._dialect = get_dialect(config.subscription_format)

        self._hb_lock = threading.Lock()
        self._heartbeat = HeartbeatMonitor(config.heartbeat_config, config.max_silence)
        hb = config.heartbeat_config
        self._hb_type = hb.type if hb else None
        self._hb_expect = hb.expect if hb and hb.type == "custom" else None
        # Text messages need a look before delivery only when something may
        # consume them: a response to a request in flight, or heartbeat traffic.
        self._hb_filters = self._hb_type == "deribit" or self._hb_expect is not None

        self._count_lock = threading.Lock()
        self._messages_received = 0
        self._bytes_received_closed = 0  # bytes of connections already gone
        self._messages_sent = 0
        self._bytes_sent_closed = 0
        self._dropped = 0
        self._reconnects = 0
        self._connected_since: float | None = None  # time.time()
        self._downtime = 0.0
        self._lost_at: float | None = None
        self._last_error: BaseException | None = None
        self._parse_errors = 0
        self._callback_errors = 0
        self._unmatched_responses = 0

        self._recorder: Any = None  # opened by connect(), closed by _finish()

    # ------------------------------------------------------------------
    # public API

    def __repr__(self) -> str:
        return f"<zen_websocket.Client name={self.name!r} url={self._meta['url']!r} state={self._state.value}>"

    def __enter__(self) -> Client:
        if self._state is ConnectionState.DISCONNECTED and not self._ever_connected and not self._final:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Any]:
        """Yield messages until the client is closed for good."""
        while True:
            try:
                yield self.recv()
            except ConnectionClosed:
                return

    def get_state(self) -> ConnectionState:
        """``"connecting"``, ``"connected"`` or ``"disconnected"`` (a :class:`ConnectionState`)."""
        return self._state

    @property
    def state(self) -> ConnectionState:
        """Same as :meth:`get_state`."""
        return self._state

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose, if any."""
        conn = self._conn
        return conn.transport.subprotocol if conn else None

    @property
    def subscriptions(self) -> list[str]:
        """Channels that are restored after a reconnect."""
        return self._subs.snapshot()

    def connect(self) -> Client:
        """Connect, retrying recoverable failures with the reconnect policy.

        Returns:
            The client itself (``zw.Client(url).connect()`` chains).

        Raises:
            ConnectError: the attempts failed; ``reason``, ``status_code``
                and ``attempts`` say why and how often. A fatal failure (401,
                certificate rejected, ...) raises after one attempt.
            UsageError: the client is already connected or was closed.
        """
        with self._state_lock:
            if self._final or self._closing:
                raise UsageError("this client was closed; create a new one")
            if self._state is not ConnectionState.DISCONNECTED or self._ever_connected:
                raise UsageError("connect() was already called on this client")
            self._state = ConnectionState.CONNECTING
        _live_clients.add(self)
        if self.config.record_to:
            from .recorder import Recorder

            self._recorder = Recorder(self.config.record_to, self.name)
        policy = self._backoff()
        attempts = 0
        while True:
            attempts += 1
            try:
                self._establish(reconnect=False)
                break
            except Exception as exc:
                self._last_error = exc
                fatal = self._is_fatal(exc)
                if fatal or policy.exhausted or self._stopping.is_set():
                    with self._state_lock:
                        self._state = ConnectionState.DISCONNECTED
                        self._final = True
                    self._done.set()
                    _live_clients.discard(self)
                    if self._recorder is not None:
                        self._recorder.close()
                    if isinstance(exc, ConnectError):
                        exc.attempts = attempts
                        raise exc from exc.__cause__
                    raise ConnectError(
                        f"connect failed: {type(exc).__name__}: {exc}", reason="error", attempts=attempts
                    ) from exc
                delay = policy.delay()
                logger.info("%s: connect attempt %d failed (%s); retrying in %.3fs", self.name, attempts, exc, delay)
                if self._stopping.wait(delay):
                    continue  # close() during the wait: the loop raises above
                policy = policy.increment()
        self._supervisor = threading.Thread(
            target=self._supervise,
            name=f"zen-ws-supervisor-{self.name}",
            # Daemon so that a script that forgets close() still exits; the
            # atexit hook closes the connection politely first.
            daemon=True,
        )
        self._supervisor.start()
        return self

    def on(self, event: str, fn: Callable[..., Any]) -> None:
        """Register ``fn`` for ``event`` (``message``, ``connect``, ``disconnect``,
        ``reconnect``, ``error``, ``close``).

        While a ``message`` callback is registered, messages go to the
        callbacks (called in the receive thread) instead of the queue.
        """
        if event not in EVENTS:
            raise ConfigError("event", f"unknown event {event!r}; expected one of {', '.join(EVENTS)}")
        if not callable(fn):
            raise TypeError("callback must be callable")
        with self._cb_lock:
            table = dict(self._callbacks)
            table[event] = (*table.get(event, ()), fn)
            self._callbacks = table

    def off(self, event: str, fn: Callable[..., Any] | None = None) -> bool:
        """Remove ``fn`` (or every callback when None) from ``event``; True if any was removed."""
        with self._cb_lock:
            table = dict(self._callbacks)
            before = table.get(event, ())
            after = () if fn is None else tuple(f for f in before if f != fn)
            if after:
                table[event] = after
            else:
                table.pop(event, None)
            self._callbacks = table
            return len(after) != len(before)

    def recv(self, timeout: float | None = None) -> Any:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Args:
            timeout: seconds to wait; None waits for ever.

        Raises:
            TimeoutError: nothing arrived within ``timeout``.
            ConnectionClosed: the client is closed for good and the queue is drained.
            NotConnectedError: ``connect()`` was never called.
            UsageError: another thread is already blocked in ``recv()``.
        """
        if not self._ever_connected and not self._final and self._queue.qsize() == 0:
            raise NotConnectedError("recv() before connect()")
        if not self._recv_lock.acquire(blocking=False):
            raise UsageError("another thread is already in recv(); use one consumer or a message callback")
        try:
            try:
                item = self._queue.get(timeout)
            except queue.Empty:
                raise TimeoutError(f"no message within {timeout}s") from None
            if item is _CLOSED:
                self._queue.close()  # leave the sentinel for the next caller
                raise ConnectionClosed(self._final_code, self._final_reason or "closed")
            return item
        finally:
            self._recv_lock.release()

    def recv_json(self, timeout: float | None = None) -> Any:
        """:meth:`recv` then ``json.loads``. Raises ``json.JSONDecodeError`` on bad JSON."""
        return json.loads(self.recv(timeout))

    def send_message(self, data: Any) -> Future[Any] | None:
        """Send ``data``: ``str`` as text, ``bytes`` as binary, ``dict``/``list`` as JSON text.

        A dict with an ``id`` and a ``method`` (a JSON-RPC request) is tracked:
        the returned Future resolves to the whole response object, and the
        response is still delivered to you like any other message.

        Raises:
            NotConnectedError: not connected (nothing is buffered).
            TypeError: unsupported type, or not JSON-encodable.
            RateLimited: with ``rate_limit_mode="raise"`` and no budget left.
        """
        opcode, payload = _encode(data)
        future = None
        request_id = None
        if isinstance(data, dict) and data.get("id") is not None and "method" in data:
            request_id = data["id"]
            future = self._correlator.track(
                request_id,
                data.get("method"),
                timeout=self.config.request_timeout,
                resolve_with="response",
                deliver=True,
            )
            self._note_deadline()
        try:
            self._send(opcode, payload, data)
        except BaseException:
            if request_id is not None:
                self._correlator.cancel(request_id)
            raise
        return future

    def request(self, method: str, params: Any = None, timeout: float | None = None) -> Any:
        """Send a JSON-RPC request and wait for its ``result``.

        Raises:
            JsonRpcError: the server answered with an error (``code``, ``message``, ``data``).
            RequestTimeout: no response within ``timeout`` (default ``request_timeout``).
            ConnectionLost: the connection dropped first (the request is not re-sent).
            NotConnectedError: not connected.
            UsageError: called from the receive thread (a ``message`` callback),
                where waiting would deadlock: use :meth:`request_async` there.
        """
        if threading.current_thread().name.startswith("zen-ws-recv-") and self._is_own_thread():
            raise UsageError(
                "request() from a message callback would deadlock the receive thread; "
                "use request_async() and add_done_callback() instead"
            )
        timeout = self.config.request_timeout if timeout is None else timeout
        message, payload = _build_request(method, params)
        # One blocked caller: a Waiter, not a Future (see jsonrpc.Waiter).
        future = self._request(message, payload, timeout, expire=False, future=jsonrpc.Waiter())
        try:
            return future.result(timeout)
        except RequestTimeout:
            raise
        except TimeoutError:
            pending = self._correlator.cancel(message["id"])
            if pending is None and future.done():
                return future.result()
            self._emit_telemetry(EV_REQ_TIMEOUT, {"timeout": timeout}, method=method, id=message["id"])
            raise RequestTimeout(message["id"], method, timeout) from None

    def request_async(self, method: str, params: Any = None, timeout: float | None = None) -> Future[Any]:
        """Send a JSON-RPC request; returns a Future of its ``result``.

        The Future raises what :meth:`request` raises. Its deadline is kept
        by the supervisor thread.
        """
        timeout = self.config.request_timeout if timeout is None else timeout
        message, payload = _build_request(method, params)
        return self._request(message, payload, timeout, expire=True)

    def subscribe(self, channels: str | Iterable[str], *, wait: bool = False, timeout: float | None = None) -> None:
        """Subscribe in the configured dialect and remember the channels.

        The channels are restored after every reconnect (``restore_subscriptions``).
        The acknowledgement is checked in the background: channels the server
        did not confirm are reported through the ``error`` event (a
        :class:`SubscriptionError`) and dropped from the restore set.

        Args:
            channels: one channel name or several.
            wait: block until acknowledged and raise :class:`SubscriptionError`
                for unconfirmed channels.
            timeout: bound on ``wait`` (default ``request_timeout``).
        """
        names = _channel_list(channels)
        if not names:
            return
        self._require_connected()
        new = [c for c in names if c not in self._subs]
        self._dialect.check_capacity(len(self._subs), len(new))
        self._subs.add(names)
        self._emit_telemetry(EV_SUB_ADD, {"count": len(names)}, channels=names)
        futures = [self._send_control(req) for req in self._dialect.build(names, True)]
        if wait:
            self._await_acks(futures, timeout, raise_missing=True)

    def unsubscribe(self, channels: str | Iterable[str], *, wait: bool = False, timeout: float | None = None) -> None:
        """Unsubscribe and remove the channels from the restore set."""
        names = _channel_list(channels)
        if not names:
            return
        self._subs.remove(names)
        self._emit_telemetry(EV_SUB_REMOVE, {"count": len(names)}, channels=names)
        if self._state is not ConnectionState.CONNECTED:
            return  # nothing to tell the server; they will not be restored
        futures = [self._send_control(req) for req in self._dialect.build(names, False)]
        if wait:
            self._await_acks(futures, timeout, raise_missing=False)

    def get_heartbeat_health(self) -> dict[str, Any]:
        """Heartbeat state: ``active``, ``type``, ``interval``, ``last_heartbeat_at``,
        ``last_rtt``, ``failures`` (consecutive), ``total_failures``."""
        with self._hb_lock:
            return self._heartbeat.health()

    def get_state_metrics(self) -> dict[str, Any]:
        """A snapshot of counters and gauges (see the README for every key)."""
        conn = self._conn
        live_in = conn.transport.bytes_received if conn else 0
        live_out = conn.transport.bytes_sent if conn else 0
        connected = self._state is ConnectionState.CONNECTED and conn is not None
        downtime = self._downtime
        if self._lost_at is not None and not self._final:
            downtime += time.monotonic() - self._lost_at
        return {
            "state": self._state.value,
            "url": self._meta["url"],
            "name": self.config.name,
            "connected_since": self._connected_since if connected else None,
            "uptime": (time.monotonic() - conn.established_at) if connected and conn else 0.0,
            "reconnects": self._reconnects,
            "downtime": downtime,
            "messages_received": self._messages_received,
            "messages_sent": self._messages_sent,
            "bytes_received": self._bytes_received_closed + (live_in if conn else 0),
            "bytes_sent": self._bytes_sent_closed + (live_out if conn else 0),
            "queue_size": self._queue.qsize(),
            "dropped_messages": self._dropped,
            "pending_requests": len(self._correlator),
            "subscriptions": len(self._subs),
            "latency_p50": self._latency.percentile(50),
            "latency_p99": self._latency.percentile(99),
            "last_error": repr(self._last_error) if self._last_error is not None else None,
            "parse_errors": self._parse_errors,
            "callback_errors": self._callback_errors,
            "unmatched_responses": self._unmatched_responses,
            "heartbeat_failures": self._heartbeat.total_failures,
        }

    def close(self, timeout: float | None = None) -> None:
        """Close for good: close frame, bounded wait, then join every thread.

        Idempotent and safe from any thread, including callbacks, a
        reconnect's backoff sleep, or with a dead peer. Bounded by
        ``close_timeout`` (or ``timeout``).
        """
        self._close(self.config.close_timeout if timeout is None else timeout)

    # ------------------------------------------------------------------
    # connection lifecycle

    def _backoff(self) -> Backoff:
        c = self.config
        return Backoff(c.retry_delay, c.max_backoff, c.jitter, c.retry_count)

    def _is_fatal(self, exc: BaseException) -> bool:
        predicate = self.config.is_fatal
        if predicate is not None:
            try:
                if predicate(exc):
                    return True
            except Exception:
                logger.exception("%s: is_fatal predicate raised; treating the error by category", self.name)
        return categorize(exc) == "fatal"

    def _is_own_thread(self) -> bool:
        conn = self._conn
        return conn is not None and threading.current_thread() is conn.thread

    def _establish(self, *, reconnect: bool) -> None:
        """One attempt: handshake, receive thread, then the connect sequence.

        Sequence: state ``connected`` -> Deribit ``set_heartbeat`` ->
        ``connect`` callbacks -> subscription restore (reconnects only).
        """
        if self._stopping.is_set():
            raise ConnectError("client is closing", reason="closed")

        def remember(ws: Any) -> None:
            self._connecting_ws = ws

        try:
            transport = Transport.open(self.config, on_socket=remember)
        finally:
            self._connecting_ws = None
        conn = _Connection(transport)
        conn.thread = threading.Thread(
            target=self._receive_loop,
            args=(conn,),
            name=f"zen-ws-recv-{self.name}",
            # Daemon so that a forgotten client never blocks interpreter exit.
            daemon=True,
        )
        with self._state_lock:
            if self._closing:
                transport.abort()
                raise ConnectError("client is closing", reason="closed")
            self._conn = conn
            self._state = ConnectionState.CONNECTED
            self._ever_connected = True
        now = time.monotonic()
        with self._hb_lock:
            self._heartbeat.start(now)
        self._connected_since = time.time()
        if self._lost_at is not None:
            self._downtime += now - self._lost_at
            self._lost_at = None
        conn.thread.start()
        logger.info("%s: connected to %s", self.name, self._meta["url"])
        self._emit_telemetry(EV_CONNECT, {"reconnect": reconnect})
        if self._hb_type == "deribit":
            assert self.config.heartbeat_config is not None
            try:
                self._internal_request("public/set_heartbeat", {"interval": self.config.heartbeat_config.interval})
            except Exception as exc:
                self._report_error(exc)
        self._emit("connect")
        if reconnect and self.config.restore_subscriptions:
            self._restore_subscriptions()

    def _supervise(self) -> None:
        """The supervisor thread: watch the connection, reconnect when it is lost."""
        try:
            while True:
                conn = self._conn
                if conn is None:
                    break
                exc = self._watch(conn)
                if exc is None:  # close() was called
                    break
                self._on_lost(conn, exc)
                if self._stopping.is_set():
                    break
                if self._is_fatal(exc):
                    self._report_error(exc)
                    self._finish(conn.close_code or _close_code_for(exc), _loss_reason(exc))
                    break
                if not self.config.reconnect_on_error:
                    self._finish(conn.close_code, _loss_reason(exc))
                    break
                if not self._reconnect():
                    break
        except Exception as exc:  # a bug here must not leave the client hanging
            logger.exception("%s: supervisor failed", self.name)
            self._report_error(exc)
            self._finish(None, "supervisor_error")

    def _watch(self, conn: _Connection) -> BaseException | None:
        """Sleep until something is due; return the loss, or None when closing."""
        while True:
            if self._stopping.is_set():
                return None
            if conn.lost.is_set():
                return conn.lost_exc or ConnectionClosed(None, "connection lost")
            self._expire_requests(time.monotonic())
            dead, deadline = self._heartbeat_step(conn)
            if dead is not None:
                return dead
            request_deadline = self._correlator.next_deadline()
            if request_deadline is not None and (deadline is None or request_deadline < deadline):
                deadline = request_deadline
            self._sleep_until = deadline
            self._wake.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
            self._wake.clear()

    def _heartbeat_step(self, conn: _Connection) -> tuple[BaseException | None, float | None]:
        """Do what the heartbeat needs now; return (the loss if the peer is dead, next deadline)."""
        while True:
            now = time.monotonic()
            with self._hb_lock:
                action = self._heartbeat.poll(now)
                deadline = self._heartbeat.next_deadline()
            if action == "send":
                self._send_heartbeat(conn)
                continue
            if action is None:
                return None, deadline
            dead: BaseException
            if action == "dead_heartbeat":
                cfg = self.config.heartbeat_config
                dead = HeartbeatTimeout(f"no heartbeat reply within {cfg.timeout if cfg else None}s")
                self._emit_telemetry(EV_HB_FAILURE, {"failures": self._heartbeat.failures})
            else:
                dead = SilenceTimeout(f"no frame for {self.config.max_silence}s")
            logger.warning("%s: connection is dead: %s", self.name, dead)
            conn.lost_exc = conn.lost_exc or dead
            conn.transport.abort()  # wakes the receive thread and any stuck writer
            conn.lost.wait(self.config.close_timeout)
            return conn.lost_exc, None

    def _on_lost(self, conn: _Connection, exc: BaseException) -> None:
        """Book-keeping after a connection is gone, before any reconnect."""
        if conn.thread is not None and conn.thread is not threading.current_thread():
            conn.thread.join(self.config.close_timeout)
        conn.transport.abort()
        self._retire(conn)
        with self._state_lock:
            if not self._closing:
                self._state = ConnectionState.CONNECTING
        with self._hb_lock:
            self._heartbeat.stop()
        self._lost_at = time.monotonic()
        self._last_error = exc
        self._fail_pending(ConnectionLost(conn.close_code, _loss_reason(exc)))
        if self._stopping.is_set():
            return
        reason = _loss_reason(exc)
        logger.warning("%s: disconnected (%s)", self.name, reason)
        self._emit_telemetry(EV_DISCONNECT, {}, reason=reason, code=conn.close_code)
        self._emit("disconnect", reason)

    def _retire(self, conn: _Connection) -> None:
        """Forget a finished connection, keeping its byte counts (once)."""
        with self._state_lock:
            if self._conn is not conn:
                return
            self._conn = None
            self._bytes_received_closed += conn.transport.bytes_received
            self._bytes_sent_closed += conn.transport.bytes_sent

    def _reconnect(self) -> bool:
        """Reconnect with backoff; False when the client ended instead."""
        policy = self._backoff()
        attempt = 0
        downtime_before = self._downtime  # this outage's time is added by _establish
        while True:
            if policy.exhausted:
                logger.error("%s: giving up after %d attempts", self.name, attempt)
                self._emit_telemetry(EV_RECONNECT_GIVE_UP, {"attempts": attempt})
                self._finish(None, "retries_exhausted")
                return False
            delay = policy.delay()
            self._emit_telemetry(EV_RECONNECT_ATTEMPT, {"attempt": attempt + 1, "delay": delay})
            if self._stopping.wait(delay):
                return False
            attempt += 1
            try:
                self._establish(reconnect=True)
            except Exception as exc:
                self._last_error = exc
                if self._stopping.is_set():
                    return False
                if self._is_fatal(exc):
                    self._report_error(exc)
                    self._finish(None, getattr(exc, "reason", None) or "fatal_error")
                    return False
                logger.info("%s: reconnect attempt %d failed: %s", self.name, attempt, exc)
                policy = policy.increment()
                continue
            self._reconnects += 1
            self._emit_telemetry(
                EV_RECONNECT_SUCCESS, {"attempts": attempt, "downtime": self._downtime - downtime_before}
            )
            self._emit("reconnect", attempt)
            return True

    def _finish(self, code: int | None, reason: str) -> None:
        """Closed for good (gave up, fatal error, or close()): runs once."""
        with self._state_lock:
            if self._final:
                return
            self._final = True
            self._state = ConnectionState.DISCONNECTED
        self._final_code = code
        self._final_reason = reason
        if self._lost_at is not None:
            self._downtime += time.monotonic() - self._lost_at
            self._lost_at = None
        self._queue.close()
        self._done.set()
        _live_clients.discard(self)
        self._emit_telemetry(EV_CLOSE, {}, code=code, reason=reason)
        self._emit("close", code, reason)
        if self._recorder is not None:
            self._recorder.close()

    def _close(self, timeout: float) -> None:
        with self._state_lock:
            already = self._closing
            self._closing = True
            conn = self._conn
        me = threading.current_thread()
        if already:
            # A second caller waits for the first (unless it is one of our threads).
            if not me.name.startswith("zen-ws-"):
                self._done.wait(timeout)
            return
        deadline = time.monotonic() + timeout
        self._stopping.set()
        self._wake.set()
        ws = self._connecting_ws
        if ws is not None:  # a handshake in progress: abort it
            try:
                ws.shutdown()
            except Exception:
                pass
        if (
            conn is not None
            and not conn.lost.is_set()
            and conn.transport.send_close(1000, "", timeout=max(0.0, deadline - time.monotonic()))
            and conn.thread is not me  # from a message callback nobody else reads the answer
        ):
            conn.peer_closed.wait(max(0.0, deadline - time.monotonic()))
            # Then the server's TCP close, which the receive thread waits for.
            conn.lost.wait(max(0.0, deadline - time.monotonic()))
        if conn is not None:
            conn.transport.abort()
            if conn.thread is not None and conn.thread is not me and conn.thread.is_alive():
                conn.thread.join(max(0.05, deadline - time.monotonic()))
            self._retire(conn)
        # Before joining the supervisor: it may be waiting on a request (a
        # connect callback authenticating, a restore waiting for its ack).
        self._fail_pending(ConnectionLost(1000, "closed by client"))
        supervisor = self._supervisor
        if supervisor is not None and supervisor is not me and supervisor.is_alive():
            supervisor.join(max(0.05, deadline - time.monotonic()))
            if supervisor.is_alive():
                logger.warning("%s: supervisor did not stop within %.2fs", self.name, timeout)
        with self._hb_lock:
            self._heartbeat.stop()
        self._finish(1000, "closed by client")

    # ------------------------------------------------------------------
    # receive thread

    def _receive_loop(self, conn: _Connection) -> None:
        transport = conn.transport
        recv = transport.recv
        monotonic = time.monotonic
        hb = self._heartbeat
        queue_put = self._queue.put
        # Unbounded (the default): straight into the SimpleQueue, nothing to count.
        put_now = self._queue._q.put if self._queue.maxsize is None else None
        stopping = self._stopping
        # The correlator's dict, read without its lock: an empty dict means no
        # request is in flight, so a notification needs no look at all.
        in_flight = self._correlator._pending
        hb_filters = self._hb_filters
        record = self._recorder.record if self._recorder is not None else None
        exc: BaseException | None = None
        try:
            while True:
                opcode, data = recv()
                hb.last_frame_at = monotonic()
                if opcode in (OP_TEXT, OP_BINARY):
                    self._messages_received += 1
                    if record is not None:
                        record("in", data)
                    if self._debug:
                        self._log_frame("<", data)
                    handlers = telemetry.handlers_for(EV_RECEIVED)
                    if handlers:
                        telemetry.dispatch(handlers, EV_RECEIVED, {"size": len(data)}, self._meta)
                    if (
                        opcode == OP_TEXT
                        and (hb_filters or (in_flight and ('"id"' in data or "\\u" in data)))
                        and self._consume(data)
                    ):
                        continue
                    message_callbacks = self._callbacks.get("message")
                    if message_callbacks:
                        for fn in message_callbacks:
                            try:
                                fn(self, data)
                            except Exception as cb_exc:
                                self._callback_failed("message", fn, cb_exc)
                    elif put_now is not None:
                        put_now(data)
                    else:
                        dropped = queue_put(data, stopping)
                        if dropped is not _CLOSED:
                            self._dropped += 1
                            self._emit_telemetry(
                                EV_OVERFLOW, {"dropped": 1, "total": self._dropped}, policy=self.config.overflow
                            )
                elif opcode == OP_PING:
                    self._send_pong(data)
                elif opcode == OP_PONG:
                    self._on_heartbeat_reply()
                elif opcode == OP_CLOSE:
                    code, reason = data
                    conn.close_code, conn.close_reason = code, reason
                    if record is not None:
                        record("close", {"code": code, "reason": reason})
                    if transport.close_sent:
                        conn.peer_closed.set()  # the answer to our close
                        self._drain_until_eof(transport)  # the server closes TCP first
                    else:
                        # Echo the peer's code (websocket-client would send 1000).
                        transport.send_close(code if code != 1005 else 1005, "", timeout=self.config.close_timeout)
                        conn.peer_closed.set()
                        self._drain_until_eof(transport)
                    exc = ConnectionClosed(code, reason)
                    break
        except (ProtocolError, MessageTooLarge) as protocol_exc:
            exc = protocol_exc
            logger.error("%s: %s; closing with %d", self.name, protocol_exc, protocol_exc.close_code)
            if transport.send_close(protocol_exc.close_code, "", timeout=self.config.close_timeout):
                self._drain_until_eof(transport)  # discard until the server closes TCP (bounded)
        except ConnectionClosed as closed_exc:
            exc = closed_exc
        except OSError as os_exc:
            exc = ConnectionClosed(None, f"socket error: {os_exc}")
            exc.__cause__ = os_exc
        except BaseException as other:  # a bug: report it, never die silently
            logger.exception("%s: receive thread failed", self.name)
            exc = other
        finally:
            if conn.lost_exc is None:
                conn.lost_exc = exc
            if self._stopping.is_set() or conn.lost_exc is not None:
                conn.peer_closed.set()
            transport.abort()
            if not self._stopping.is_set():
                # Fail in-flight requests at once; a waiting connect callback
                # must not sit out its whole timeout.
                self._fail_pending(ConnectionLost(conn.close_code, _loss_reason(conn.lost_exc)))
            conn.lost.set()
            self._wake.set()

    def _drain_until_eof(self, transport: Transport) -> None:
        """After a close frame: give the server ``close_timeout`` in all to close TCP first.

        Whatever arrives meanwhile is discarded; a peer that keeps sending
        cannot stretch the wait.
        """
        deadline = time.monotonic() + self.config.close_timeout
        sock = transport.sock
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                sock.settimeout(remaining)
                if not sock.recv(65536):
                    return
        except OSError:
            pass

    def _consume(self, text: str) -> bool:
        """True if ``text`` is library traffic (a response, heartbeat) not for the user."""
        expect = self._hb_expect
        if expect is not None:
            matched = text == expect if isinstance(expect, str) else _safe_predicate(expect, text)
            if matched:
                self._on_heartbeat_reply()
                return True
        deribit = self._hb_type == "deribit" and "heartbeat" in text
        if not deribit and not (len(self._correlator) and jsonrpc.may_be_response(text)):
            return False
        try:
            message = json.loads(text)
        except ValueError:
            self._parse_errors += 1
            return False
        if not isinstance(message, dict):
            return False
        if deribit and message.get("method") == "heartbeat":
            self._on_heartbeat_reply()
            params = message.get("params")
            if isinstance(params, dict) and params.get("type") == "test_request":
                try:
                    self._internal_request_async("public/test", {}, charge=True)
                except Exception as exc:
                    self._report_error(exc)
            return True
        if message.get("id") is None:
            return False
        pending = self._correlator.take(message)
        if pending is None:
            if "result" in message or "error" in message:
                self._unmatched_responses += 1
            return False
        rtt = pending.rtt
        if rtt is not None:
            self._latency.add(rtt)
        if telemetry.handlers_for(EV_REQ_STOP):
            self._emit_telemetry(EV_REQ_STOP, {"duration": rtt}, method=pending.method, id=pending.id)
        # Last: the woken caller competes with this thread for the GIL, so
        # the book-keeping above is done before it wakes.
        pending.complete(message)
        return not pending.deliver  # send_message futures: the user gets the response too

    def _on_heartbeat_reply(self) -> None:
        with self._hb_lock:
            rtt = self._heartbeat.on_reply(time.monotonic())
        handlers = telemetry.handlers_for(EV_HB_REPLY)
        if handlers:
            telemetry.dispatch(handlers, EV_HB_REPLY, {"rtt": rtt}, dict(self._meta, type=self._hb_type))

    def _log_frame(self, direction: str, data: Any) -> None:
        if isinstance(data, str):
            logger.debug("%s %s text %d chars: %s", self.name, direction, len(data), _redact(data[:500]))
        else:
            logger.debug("%s %s binary %d bytes", self.name, direction, len(data))

    # ------------------------------------------------------------------
    # sending

    def _require_connected(self) -> _Connection:
        conn = self._conn
        if conn is None or self._state is not ConnectionState.CONNECTED:
            if self._final:
                raise NotConnectedError("the client is closed")
            raise NotConnectedError(f"not connected (state {self._state.value})")
        return conn

    def _send(self, opcode: int, payload: bytes, message: Any, *, internal: bool = False, charge: bool = False) -> None:
        """Every data frame goes out here: rate limit, record, log, write, count, telemetry.

        ``charge=True`` (sends from the receive thread) takes the limiter's
        tokens without waiting: the receive thread must never block on it.
        """
        conn = self._require_connected()
        limiter = self.config.rate_limiter
        if limiter is not None:
            if charge:
                limiter.charge(message)
            else:
                self._rate_limit(limiter, message, internal)
        if self._recorder is not None or self._debug:
            # Before the write: an echo must never be recorded (or logged) ahead of its cause.
            shown = message if isinstance(message, (str, bytes)) else payload.decode("utf-8")
            if self._recorder is not None:
                self._recorder.record("out", shown)
            if self._debug:
                self._log_frame(">", shown)
        try:
            conn.transport.send_frame(opcode, payload)
        except OSError as exc:
            raise NotConnectedError(f"connection lost while sending: {exc}") from exc
        with self._count_lock:
            self._messages_sent += 1
        handlers = telemetry.handlers_for(EV_SENT)
        if handlers:
            telemetry.dispatch(handlers, EV_SENT, {"size": len(payload)}, self._meta)

    def _rate_limit(self, limiter: Any, message: Any, internal: bool) -> None:
        if limiter.consume(message):
            return
        if self.config.rate_limit_mode == "raise" and not internal:
            retry_after = limiter.retry_after(message)
            self._emit_telemetry(EV_RL_REJECT, {"retry_after": retry_after})
            raise RateLimited(retry_after)
        started = time.monotonic()
        while not limiter.acquire(message, timeout=0.5):
            if self._stopping.is_set():
                raise NotConnectedError("the client is closing")
        self._emit_telemetry(EV_RL_WAIT, {"duration": time.monotonic() - started})

    def _send_pong(self, payload: bytes) -> None:
        """Answer a ping from the receive thread: it must go out now, so it never waits."""
        conn = self._conn
        if conn is None:
            return
        limiter = self.config.rate_limiter
        if limiter is not None and hasattr(limiter, "charge"):
            limiter.charge(None)
        try:
            conn.transport.pong(payload)
        except OSError:
            pass  # the receive loop sees the failure on its next read

    def _send_heartbeat(self, conn: _Connection) -> None:
        cfg = self.config.heartbeat_config
        assert cfg is not None
        now = time.monotonic()
        with self._hb_lock:
            self._heartbeat.on_sent(now)
        try:
            if cfg.type == "ping":
                limiter = self.config.rate_limiter
                if limiter is not None:
                    self._rate_limit(limiter, None, True)
                conn.transport.ping(b"zw")
            else:
                opcode, payload = _encode(cfg.message)
                self._send(opcode, payload, cfg.message, internal=True)
        except (OSError, NotConnectedError) as exc:
            logger.debug("%s: heartbeat send failed: %s", self.name, exc)
            return
        self._emit_telemetry(EV_HB_SENT, {}, type=cfg.type)

    def _request(
        self, message: dict[str, Any], payload: bytes, timeout: float, *, expire: bool, future: Any = None
    ) -> Future[Any]:
        """Track then send a request; the returned Future resolves to its result."""
        self._require_connected()
        request_id = message["id"]
        future = self._correlator.track(
            request_id, message["method"], timeout=timeout if expire else None, future=future
        )
        if expire:
            self._note_deadline()
        if telemetry.handlers_for(EV_REQ_START):
            self._emit_telemetry(EV_REQ_START, {}, method=message["method"], id=request_id)
        try:
            self._send(OP_TEXT, payload, message)
        except BaseException:
            self._correlator.cancel(request_id)
            raise
        return future

    def _internal_request_async(self, method: str, params: Any, *, charge: bool = False) -> Future[Any]:
        """A request the library makes; its response is not delivered to the user."""
        message = jsonrpc.build_request(method, params)
        self._require_connected()
        request_id = message["id"]
        future = self._correlator.track(
            request_id, method, timeout=self.config.request_timeout, resolve_with="response"
        )
        self._note_deadline()
        payload = _dumps(message)
        try:
            self._send(OP_TEXT, payload, message, internal=True, charge=charge)
        except BaseException:
            self._correlator.cancel(request_id)
            raise
        return future

    def _internal_request(self, method: str, params: Any) -> Any:
        future = self._internal_request_async(method, params)
        response = future.result(self.config.request_timeout)
        if isinstance(response, dict) and "error" in response:
            raise jsonrpc.error_from_response(response, method)
        return response.get("result") if isinstance(response, dict) else response

    def _send_control(self, req: Any) -> Future[Any] | None:
        """Send one subscription request; its acknowledgement is checked, not delivered."""
        message = req.message
        future: Future[Any] | None = None
        if req.request_id is not None:
            future = self._correlator.track(
                req.request_id, req.method, timeout=self.config.request_timeout, resolve_with="response"
            )
            self._note_deadline()
            future.add_done_callback(functools.partial(self._check_ack, req))
        opcode, payload = _encode(message)
        try:
            self._send(opcode, payload, message, internal=True)
        except BaseException:
            if req.request_id is not None:
                self._correlator.cancel(req.request_id)
            raise
        if future is not None:
            future.zw_request = req  # type: ignore[attr-defined]
        return future

    def _check_ack(self, req: Any, future: Future[Any]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if isinstance(exc, ConnectionLost):
            return  # the restore after the reconnect subscribes again
        if exc is not None:
            # No answer (a timeout): ambiguous, so the channels stay in the
            # restore set; the next reconnect subscribes them again.
            missing = list(req.channels)
            error: SubscriptionError = SubscriptionError(f"subscription not acknowledged: {exc}", missing)
        else:
            missing = self._dialect.check_ack(req, future.result())
            if not missing:
                return
            error = SubscriptionError(f"server did not confirm channels: {', '.join(missing)}", missing)
            if req.method is None or "unsubscribe" not in str(req.method).lower():
                self._subs.remove(missing)  # refused: restoring would only be refused again
        future.zw_missing = missing  # type: ignore[attr-defined]
        self._emit_telemetry(EV_SUB_ERROR, {"count": len(missing)}, channels=missing)
        self._report_error(error)

    def _await_acks(
        self,
        futures: list[Future[Any] | None],
        timeout: float | None,
        *,
        raise_missing: bool,
    ) -> list[str]:
        deadline = time.monotonic() + (self.config.request_timeout if timeout is None else timeout)
        conn = self._conn
        if conn is not None and threading.current_thread() is self._supervisor:
            # The supervisor is also the heartbeat timer: keep it beating while
            # it waits, so that a peer that stalls during a restore is caught
            # by the heartbeat rather than by request_timeout.
            pending = [f for f in futures if f is not None]
            while pending and time.monotonic() < deadline:
                dead, beat = self._heartbeat_step(conn)
                if dead is not None:
                    break
                until = deadline if beat is None else min(deadline, beat)
                concurrent.futures.wait(pending, timeout=max(0.0, until - time.monotonic()))
                pending = [f for f in pending if not f.done()]
        missing: list[str] = []
        for future in futures:
            if future is None:
                continue
            try:
                future.result(max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                missing.extend(future.zw_request.channels)  # type: ignore[attr-defined]
                continue
            except Exception:
                pass
            missing.extend(getattr(future, "zw_missing", []))
        if missing and raise_missing:
            raise SubscriptionError(f"channels not confirmed: {', '.join(missing)}", missing)
        return missing

    def _restore_subscriptions(self) -> None:
        channels = self._subs.snapshot()
        if not channels:
            return
        started = time.monotonic()
        futures: list[Future[Any] | None] = []
        for index, req in enumerate(plan_restore(self._dialect, channels)):
            if index and self._dialect.min_interval and self._stopping.wait(self._dialect.min_interval):
                return
            try:
                futures.append(self._send_control(req))
            except NotConnectedError:
                return  # lost again: the next reconnect restores
        missing = self._await_acks(futures, None, raise_missing=False)
        self._emit_telemetry(
            EV_SUB_RESTORE,
            {"count": len(channels), "missing": len(missing), "duration": time.monotonic() - started},
        )

    def _note_deadline(self) -> None:
        """Wake the supervisor if a new request deadline is earlier than its sleep."""
        deadline = self._correlator.next_deadline()
        sleep_until = self._sleep_until
        if deadline is not None and (sleep_until is None or deadline < sleep_until):
            self._wake.set()

    def _expire_requests(self, now: float) -> None:
        for pending in self._correlator.expire(now):
            self._emit_telemetry(EV_REQ_TIMEOUT, {}, method=pending.method, id=pending.id)

    def _fail_pending(self, exc: ConnectionLost) -> None:
        self._correlator.fail_all(lambda pending: ConnectionLost(exc.code, exc.reason))

    # ------------------------------------------------------------------
    # callbacks, errors, telemetry

    def _emit(self, event: str, *args: Any) -> None:
        for fn in self._callbacks.get(event, ()):
            try:
                fn(self, *args)
            except Exception as exc:
                self._callback_failed(event, fn, exc)

    def _callback_failed(self, event: str, fn: Any, exc: Exception) -> None:
        self._callback_errors += 1
        logger.error("%s: %s callback %r raised", self.name, event, fn, exc_info=exc)
        self._emit_telemetry(EV_CALLBACK_ERROR, {}, event=event, error=exc)
        if event != "error":
            wrapped = CallbackError(event, fn)
            wrapped.__cause__ = exc
            self._report_error(wrapped)

    def _report_error(self, exc: BaseException) -> None:
        self._last_error = exc
        self._emit_telemetry(EV_ERROR, {}, error=exc)
        self._emit("error", exc)

    def _emit_telemetry(self, event: tuple[str, ...], measurements: dict[str, Any], /, **metadata: Any) -> None:
        handlers = telemetry.handlers_for(event)
        if handlers:
            telemetry.dispatch(handlers, event, measurements, {**self._meta, **metadata})


def connect(url: str, **options: Any) -> Client:
    """Build a :class:`Client` and connect it.

    Raises:
        ConfigError: invalid option (named).
        ConnectError: every allowed attempt failed, or a fatal failure.
    """
    return Client(url, **options).connect()


def _encode(data: Any) -> tuple[int, bytes]:
    if isinstance(data, str):
        return OP_TEXT, data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return OP_BINARY, bytes(data)
    if isinstance(data, (dict, list)):
        return OP_TEXT, _dumps(data)
    raise TypeError(f"cannot send {type(data).__name__}: use str, bytes, dict or list")


def _dumps(data: Any) -> bytes:
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"message is not JSON-encodable: {exc}") from exc


_encode_json_str = json.encoder.encode_basestring_ascii  # C-accelerated, as json.dumps uses


def _build_request(method: str, params: Any) -> tuple[dict[str, Any], bytes]:
    """A JSON-RPC request and its encoding, encoded once (TypeError before anything is sent)."""
    if not isinstance(method, str) or not method:
        raise TypeError(f"method must be a non-empty str, got {method!r}")
    request_id = jsonrpc.next_id()
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    # The envelope is formatted directly (the same bytes json.dumps would give);
    # only params go through the encoder.
    head = f'{{"jsonrpc":"2.0","id":{request_id},"method":{_encode_json_str(method)}'
    if params is None:
        return message, (head + "}").encode("utf-8")
    message["params"] = params
    return message, head.encode("utf-8") + b',"params":' + _dumps(params) + b"}"


def _channel_list(channels: str | Iterable[str]) -> list[str]:
    names = [channels] if isinstance(channels, str) else list(channels)
    for name in names:
        if not isinstance(name, str) or not name:
            raise TypeError(f"channel names must be non-empty str, got {name!r}")
    return list(dict.fromkeys(names))


def _safe_predicate(predicate: Callable[[Any], bool], message: Any) -> bool:
    try:
        return bool(predicate(message))
    except Exception:
        logger.exception("heartbeat expect predicate raised")
        return False


def _loss_reason(exc: BaseException | None) -> str:
    if isinstance(exc, HeartbeatTimeout):
        return "heartbeat_timeout"
    if isinstance(exc, SilenceTimeout):
        return "max_silence"
    if isinstance(exc, MessageTooLarge):
        return "message_too_large"
    if isinstance(exc, ProtocolError):
        return "protocol_error"
    if isinstance(exc, ConnectionClosed):
        return f"remote_close:{exc.code}" if exc.code is not None else "connection_dropped"
    if exc is None:
        return "unknown"
    return type(exc).__name__


def _close_code_for(exc: BaseException) -> int | None:
    code = getattr(exc, "close_code", None)
    if isinstance(code, int):
        return code
    return getattr(exc, "code", None)

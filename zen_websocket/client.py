"""The public client: one logical connection, kept alive until ``close()``.

:class:`Client` is the facade users call. It owns what users see (the
callbacks, the inbox behind ``recv()``, the subscription set, the metrics)
and the layers of the send path; the threads, sockets and timers belong to
its :class:`~zen_websocket.connection.Driver`, and every policy decision
(retry or give up, is the peer dead, is this message the library's) to its
:class:`~zen_websocket.session.Session`. See the README's "Architecture".

The send path, one layer each (as httpx's ``send`` ->
``_send_handling_auth`` -> ``_send_single_request``)::

    send_message / request / subscribe     encode, build the request
      -> _send_tracked                      track the id before the write (a fast answer must find it)
        -> _send                            rate limit ("wait" or "raise"; library sends always wait)
          -> Driver.write                   record, log, write (bounded by write_timeout), count

Locks (never held while calling user code or telemetry):

- ``_callbacks`` (a :class:`~zen_websocket.callbacks.CallbackTable`) is copy-on-write: readers don't lock.
- ``_recv_lock``: one consumer of the inbox at a time.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any

from . import jsonrpc, telemetry
from .callbacks import CallbackTable
from .config import EVENTS, ClientConfig, check_callback, check_url, options_doc, options_signature, redact_url
from .connection import ConnectionState, Driver, Lead, _live_drivers, close_all_at_exit, encode
from .errors import (
    CallbackError,
    ConfigError,
    ConnectError,
    ConnectionClosed,
    ConnectionLost,
    NotConnectedError,
    RateLimited,
    RequestTimeout,
    SubscriptionError,
    UsageError,
)
from .inbox import CLOSED, Inbox
from .protocol import OP_TEXT
from .scheduler import TIMER_THREAD
from .session import Session
from .subscriptions import SubscriptionSet, channel_list, get_dialect, plan_restore

__all__ = ["Client", "ConnectionState", "close_all", "connect", "open_clients"]

logger = logging.getLogger(__name__)


# Daemon threads would die silently at exit; close politely instead, with a
# short bound so that a script that forgot close() still exits at once.
atexit.register(close_all_at_exit)


class Client:
    """A WebSocket client that stays connected until you close it.

    Args:
        url: ``ws://`` or ``wss://`` URL, or a callable returning one, called
            for every connection attempt (a URL that embeds a renewable key).
        **options: see the README's options table (``timeout``, ``headers``,
            ``retry_count``, ``heartbeat_config``, ``max_queue``,
            ``write_timeout``, ...) and ``on_<event>=fn`` callbacks.

    Raises:
        ConfigError: an option is invalid or unknown (it is named).

    Example::

        with zw.connect("wss://test.deribit.com/ws/api/v2") as client:
            client.subscribe(["deribit_price_index.btc_usd"])
            for message in client:
                print(message)
    """

    def __init__(self, url: str | Callable[[], str], **options: Any) -> None:
        config = ClientConfig.from_options(url, **options)
        self.config = config
        self.name = config.label
        self.url = config.url
        shown = f"<callable {config.label}>" if callable(config.url) else redact_url(config.url)
        self._meta: dict[str, Any] = {"url": shown, "name": config.name}

        self._callbacks = CallbackTable(config.callbacks)
        self._inbox = Inbox(config.max_queue, config.overflow)
        self._recv_lock = threading.Lock()  # one consumer at a time
        # (event, id(fn)) of callbacks whose failure went to stderr (logging not configured).
        self._shown_failures: set[tuple[str, int]] = set()

        self._correlator = jsonrpc.Correlator()
        self._latency = jsonrpc.LatencyWindow()
        self._subs = SubscriptionSet()
        self._dialect = get_dialect(config.subscription_format)
        self._session = Session(config, self._correlator)
        self._driver = Driver(self, self._session)

    # ------------------------------------------------------------------
    # public API

    def __repr__(self) -> str:
        return f"<zen_websocket.Client name={self.name!r} url={self._meta['url']!r} state={self._driver.state.value}>"

    def __enter__(self) -> Client:
        driver = self._driver
        if driver.state is ConnectionState.DISCONNECTED and not driver.ever_connected and not driver.final:
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
        return self._driver.state

    @property
    def state(self) -> ConnectionState:
        """Same as :meth:`get_state`."""
        return self._driver.state

    @property
    def subprotocol(self) -> str | None:
        """The subprotocol the server chose, if any."""
        link = self._driver.link
        return link.subprotocol if link else None

    @property
    def subscriptions(self) -> list[str]:
        """Channels that are restored after a reconnect."""
        return self._subs.snapshot()

    @property
    def close_code(self) -> int | None:
        """The close code once the client has ended for good (``1000`` after ``close()``), else None.

        None also when it ended without a close frame (``close_reason``
        ``"retries_exhausted"`` or a fatal error).
        """
        driver = self._driver
        # done, not final: done is set only after the code and reason are.
        return driver.final_code if driver.done.is_set() else None

    @property
    def close_reason(self) -> str | None:
        """Why the client ended (``"closed by client"``, ``"retries_exhausted"``, ...), or None while it has not.

        After ``for message in client:`` ends this tells a ``close()`` from
        giving up. ``"connect_failed"`` when the first ``connect()`` raised.
        """
        driver = self._driver
        if not driver.done.is_set():
            return None
        return driver.final_reason or "connect_failed"

    def connect(self) -> Client:
        """Connect, retrying recoverable failures with the reconnect policy.

        Returns:
            The client itself (``zw.Client(url).connect()`` chains).

        Raises:
            ConnectError: the attempts failed; ``reason``, ``status_code``
                and ``attempts`` say why and how often. A fatal failure (401,
                a redirect, certificate rejected, ...) raises after one attempt;
                so does a ``connect`` callback that raises a fatal
                ``ConnectError`` (wrong credentials, ``reason="unauthorized"``),
                after the connection is closed.
            ConfigError: ``record_to`` cannot be opened.
            UsageError: the client is already connected or was closed.
        """
        self._driver.connect()
        return self

    def on(self, event: str, fn: Callable[..., Any]) -> None:
        """Register ``fn`` for ``event`` (``message``, ``connect``, ``disconnect``,
        ``reconnect``, ``error``, ``close``).

        While a ``message`` callback is registered, messages go to the
        callbacks (called in the receive thread) instead of the queue.
        """
        if event not in EVENTS:
            raise ConfigError("event", f"unknown event {event!r}; expected one of {', '.join(EVENTS)}")
        check_callback(event, fn)  # TypeError naming the event and the arguments it passes
        self._callbacks.add(event, fn)

    def off(self, event: str, fn: Callable[..., Any] | None = None) -> bool:
        """Remove ``fn`` (or every callback when None) from ``event``; True if any was removed."""
        return self._callbacks.remove(event, fn)

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
        driver = self._driver
        if not driver.ever_connected and not driver.final and self._inbox.qsize() == 0:
            raise NotConnectedError("recv() before connect()")
        if not self._recv_lock.acquire(blocking=False):
            raise UsageError("another thread is already in recv(); use one consumer or a message callback")
        try:
            inbox = self._inbox
            if inbox.qsize() == 0:
                timeout = self._read_for_recv(timeout)
            try:
                item = inbox.get(timeout)
            except queue.Empty:
                raise TimeoutError(f"no message within {timeout}s") from None
            if item is CLOSED:
                self._inbox.close()  # leave the sentinel for the next caller
                raise ConnectionClosed(driver.final_code, driver.final_reason or "closed")
            return item
        finally:
            self._recv_lock.release()

    def _read_for_recv(self, timeout: float | None) -> float | None:
        """recv() found the queue empty: read the socket in this thread when nobody else is.

        The same leader/follower as :meth:`request` (``connection.Lead``):
        what this thread reads goes to the queue, in order, exactly as if the
        receive thread had read it, with no hand-off between threads. Returns
        what is left of ``timeout``.
        """
        driver = self._driver
        lead = Lead(driver, consumer=True)
        started = time.monotonic()
        try:
            try:
                lead.take()
            except NotConnectedError:
                pass  # reconnecting, or closed: the queue says which
            if lead.taken:
                queue_empty = self._inbox.empty
                lead.read(lambda: not queue_empty(), timeout)
            elif driver._parked is not None:
                driver.unpark()  # a request() caller left the receive thread parked: it reads for us now
        finally:
            lead.release()
        return None if timeout is None else max(0.0, timeout - (time.monotonic() - started))

    def recv_json(self, timeout: float | None = None) -> Any:
        """:meth:`recv` then ``json.loads``. Raises ``json.JSONDecodeError`` on bad JSON."""
        return json.loads(self.recv(timeout))

    def send_message(self, data: Any) -> Future[Any] | None:
        """Send ``data``: ``str`` as text, ``bytes`` as binary, ``dict``/``list`` as JSON text.

        A dict with an ``id`` and a ``method`` (a JSON-RPC request) is tracked:
        the returned Future resolves to the whole response object, and the
        response is still delivered to you like any other message.

        Raises:
            NotConnectedError: not connected (nothing is buffered), or the
                write did not complete within ``write_timeout``.
            TypeError: unsupported type, or not JSON-encodable.
            RateLimited: with ``rate_limit_mode="raise"`` and no budget left.
        """
        opcode, payload = encode(data)
        if isinstance(data, dict) and data.get("id") is not None and "method" in data:
            return self._send_tracked(
                data["id"],
                data.get("method"),
                data,
                payload,
                self.config.request_timeout,
                resolve_with="response",
                deliver=True,
                opcode=opcode,
            )
        self._send(opcode, payload, data)
        return None

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
        if self._driver.is_receive_thread():
            raise UsageError(
                "request() from a message callback would deadlock the receive thread; "
                "use request_async() and add_done_callback() instead"
            )
        if threading.current_thread().name == TIMER_THREAD:
            raise UsageError(
                "request() from a future's done-callback on the timer thread would stall every "
                "client's heartbeats; use request_async() there"
            )
        timeout = self.config.request_timeout if timeout is None else timeout
        message, payload = jsonrpc.encode_request(method, params)
        started = time.monotonic()
        # The answer is read in this thread when nobody else is reading
        # (leader/follower, see connection.Lead): no hand-off to and from the
        # receive thread.
        lead = Lead(self._driver)
        try:
            try:
                # One blocked caller: a Waiter, not a Future (see jsonrpc.Waiter);
                # its deadline is the caller's own wait, not a timer.
                future = self._send_tracked(
                    message["id"], method, message, payload, None, future=jsonrpc.Waiter(), before_write=lead.take
                )
                lead.read(future.done, timeout)
            finally:
                lead.release()
            return future.result(None if timeout is None else max(0.0, timeout - (time.monotonic() - started)))
        except RequestTimeout:
            raise
        except TimeoutError:
            pending = self._correlator.cancel(message["id"])
            if pending is None and future.done():
                return future.result()
            self._emit_telemetry(telemetry.REQUEST_TIMEOUT, {"timeout": timeout}, method=method, id=message["id"])
            raise RequestTimeout(message["id"], method, timeout) from None
        except KeyboardInterrupt:
            self._correlator.cancel(message["id"])  # its answer, if it comes, is not waited for
            raise

    def request_async(self, method: str, params: Any = None, timeout: float | None = None) -> Future[Any]:
        """Send a JSON-RPC request; returns a Future of its ``result``.

        The Future raises what :meth:`request` raises. Its deadline is kept
        by the shared timer thread; done-callbacks run in the thread that
        completes it (the thread that read the answer: the receive thread, or
        a thread blocked in :meth:`request` or :meth:`recv` meanwhile; the timer thread on a
        timeout), so keep them short.
        """
        timeout = self.config.request_timeout if timeout is None else timeout
        message, payload = jsonrpc.encode_request(method, params)
        return self._send_tracked(message["id"], method, message, payload, timeout)

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
        names = channel_list(channels)
        if not names:
            return
        self._driver.require_link()
        new = [c for c in names if c not in self._subs]
        self._dialect.check_capacity(len(self._subs), len(new))
        self._subs.add(names)
        self._emit_telemetry(telemetry.SUBSCRIPTION_ADD, {"count": len(names)}, channels=names)
        futures = [self._send_control(req) for req in self._dialect.build(names, True)]
        if wait:
            self._await_acks(futures, timeout, raise_missing=True)

    def unsubscribe(self, channels: str | Iterable[str], *, wait: bool = False, timeout: float | None = None) -> None:
        """Unsubscribe and remove the channels from the restore set."""
        names = channel_list(channels)
        if not names:
            return
        self._subs.remove(names)
        self._emit_telemetry(telemetry.SUBSCRIPTION_REMOVE, {"count": len(names)}, channels=names)
        if self._driver.state is not ConnectionState.CONNECTED:
            return  # nothing to tell the server; they will not be restored
        futures = [self._send_control(req) for req in self._dialect.build(names, False)]
        if wait:
            self._await_acks(futures, timeout, raise_missing=False)

    def get_heartbeat_health(self) -> dict[str, Any]:
        """Heartbeat state: ``active``, ``type``, ``interval``, ``last_heartbeat_at``,
        ``last_rtt``, ``failures`` (consecutive), ``total_failures``."""
        session = self._session
        with session._hb_lock:
            return session.heartbeat.health()

    def get_state_metrics(self) -> dict[str, Any]:
        """A snapshot of counters and gauges (see the README for every key)."""
        d = self._driver
        s = self._session
        link = d.link
        connected = d.state is ConnectionState.CONNECTED and link is not None
        downtime = d.downtime
        if d.lost_at is not None and not d.final:
            downtime += time.monotonic() - d.lost_at
        return {
            "state": d.state.value,
            "url": self._meta["url"],
            "name": self.config.name,
            "connected_since": d.connected_since if connected else None,
            "uptime": (time.monotonic() - link.established_at) if connected and link else 0.0,
            "reconnects": d.reconnects,
            "downtime": downtime,
            "messages_received": d.messages_received,
            "messages_sent": d.messages_sent,
            "bytes_received": d.bytes_received_closed + (link.bytes_received if link else 0),
            "bytes_sent": d.bytes_sent_closed + (link.bytes_sent if link else 0),
            "queue_size": self._inbox.qsize(),
            "dropped_messages": d.dropped,
            "pending_requests": len(self._correlator),
            "subscriptions": len(self._subs),
            "latency_p50": self._latency.percentile(50),
            "latency_p99": self._latency.percentile(99),
            "last_error": repr(d.last_error) if d.last_error is not None else None,
            "parse_errors": s.parse_errors,
            "callback_errors": d.callback_errors,
            "unmatched_responses": s.unmatched_responses,
            "heartbeat_failures": s.heartbeat.total_failures,
            "test_requests_coalesced": s.test_requests_coalesced,
            "pongs_skipped": d.pongs_skipped,
        }

    def rotate(self, timeout: float | None = None) -> None:
        """Replace the connection make-before-break.

        A second connection is opened; the ``connect`` callbacks run and the
        subscriptions are restored on it while the old one still delivers;
        then delivery switches and the old connection is closed with 1000.
        Nothing received is lost, but a message may arrive on both
        connections around the switch (deduplicate by sequence number or
        timestamp where that matters). ``max_connection_age`` calls this by
        itself.

        Args:
            timeout: bound on the new connection's handshake (default: the
                ``timeout`` option).

        Raises:
            ConnectError: the new connection failed; the old one stays in place.
            NotConnectedError: not connected.
        """
        self._driver.rotate(timeout)

    def close(self, timeout: float | None = None) -> None:
        """Close for good: close frame, bounded wait, then join every thread.

        Idempotent and safe from any thread, including callbacks, a
        reconnect's backoff sleep, a handshake in progress, or with a dead
        peer. Bounded by ``close_timeout`` (or ``timeout``).
        """
        self._driver.close(self.config.close_timeout if timeout is None else timeout)

    # ------------------------------------------------------------------
    # the connect sequence (called by the driver)

    def _resolve_url(self) -> str:
        """The URL of the next attempt: ``url`` itself, or what the callable ``url`` returns now."""
        url = self.config.url
        if not callable(url):
            return url
        current = url()
        check_url(current, option="url()")
        self._meta["url"] = redact_url(current)
        return current

    def _after_connect(self, *, reconnect: bool, rotation: bool = False) -> None:
        """After every handshake: Deribit ``set_heartbeat``, ``connect`` callbacks, then the restore.

        Runs in the caller of ``connect()`` the first time, in the driver's
        connect thread after a reconnect and in the rotating thread for a
        rotation; never in the receive thread, so callbacks may wait on
        ``client.request()``. A rotation always restores the subscriptions
        (the new connection has none).

        Raises:
            ConnectError: a ``connect`` callback refused the connection (e.g.
                the exchange refused its credentials); nothing after it runs,
                and the driver decides what follows (``Driver.refuse``).
        """
        hb = self.config.heartbeat_config
        if hb is not None and hb.type == "deribit":
            try:
                # Deribit wants an integer number of seconds (public/set_heartbeat).
                self._internal_request("public/set_heartbeat", {"interval": _heartbeat_seconds(hb.interval)})
            except Exception as exc:
                self._report_error(exc)
        self._emit("connect", refusable=True)
        if rotation or (reconnect and self.config.restore_subscriptions):
            self._restore_subscriptions()

    def _refuse(self, exc: ConnectError) -> None:
        """Refuse the current connection from outside the connect sequence (for platform adapters).

        The same as a ``connect`` callback raising ``exc``: a fatal error
        (``reason="unauthorized"``) ends the client with the ``error`` and
        ``close`` events; a recoverable one is reported and the connection
        is dropped and reconnected. Never blocks long: safe from the receive
        thread and from a future's done-callback.
        """
        self._driver.refuse(exc)

    def _restore_subscriptions(self) -> None:
        channels = self._subs.snapshot()
        if not channels:
            return
        started = time.monotonic()
        futures: list[Future[Any] | None] = []
        stopping = self._driver.stopping
        for index, req in enumerate(plan_restore(self._dialect, channels)):
            if index and self._dialect.min_interval and stopping.wait(self._dialect.min_interval):
                return
            try:
                futures.append(self._send_control(req))
            except NotConnectedError:
                return  # lost again: the next reconnect restores
        missing = self._await_acks(futures, None, raise_missing=False)
        self._emit_telemetry(
            telemetry.SUBSCRIPTION_RESTORE,
            {"count": len(channels), "missing": len(missing), "duration": time.monotonic() - started},
        )

    # ------------------------------------------------------------------
    # the send path

    def _send_tracked(
        self,
        request_id: Any,
        method: str | None,
        message: Any,
        payload: bytes,
        timeout: float | None,
        *,
        resolve_with: jsonrpc.ResolveWith = "result",
        deliver: bool = False,
        internal: bool = False,
        charge: bool = False,
        future: Any = None,
        opcode: int = OP_TEXT,
        before_write: Callable[[], None] | None = None,
    ) -> Future[Any]:
        """Track a request's id, then send it; the returned Future resolves with its answer.

        ``timeout`` None: no timer deadline (a blocking caller waits itself).
        ``before_write`` runs after the rate limiter let the frame through,
        just before it is written.
        """
        self._driver.require_link()
        tracked = self._correlator.track(
            request_id, method, timeout=timeout, resolve_with=resolve_with, future=future, deliver=deliver
        )
        if before_write is None and self._driver._parked is not None:
            self._driver.unpark()  # nobody will lead for this one: the receive thread reads its answer
        if timeout is not None:
            self._driver.reschedule()
        if not internal and telemetry.handlers_for(telemetry.REQUEST_START):
            self._emit_telemetry(telemetry.REQUEST_START, {}, method=method, id=request_id)
        try:
            self._send(opcode, payload, message, internal=internal, charge=charge, before_write=before_write)
        except BaseException:
            self._correlator.cancel(request_id)
            raise
        return tracked

    def _send(
        self,
        opcode: int,
        payload: bytes,
        message: Any,
        *,
        internal: bool = False,
        charge: bool = False,
        before_write: Callable[[], None] | None = None,
    ) -> None:
        """Rate limit, then write (``before_write`` runs in between).

        ``charge=True`` (sends from the receive thread) takes the limiter's
        tokens without waiting (the debt is bounded by the limiter): the
        receive thread must never block on it.
        """
        limiter = self.config.rate_limiter
        if limiter is not None:
            self._driver.require_link()
            if charge:
                limiter.charge(message)
            elif not limiter.consume(message):
                self._rate_limit_wait(limiter, message, internal)
        if before_write is not None:
            before_write()
        self._driver.write(opcode, payload, message)
        if not internal and self._dialect.unsubscribes_all(message):
            # Deribit public/unsubscribe_all sent by the user: nothing may come back after a reconnect.
            dropped = self._subs.clear()
            if dropped:
                self._emit_telemetry(telemetry.SUBSCRIPTION_REMOVE, {"count": len(dropped)}, channels=dropped)

    def _rate_limit_wait(self, limiter: Any, message: Any, internal: bool) -> None:
        if self.config.rate_limit_mode == "raise" and not internal:
            retry_after = limiter.retry_after(message)
            self._emit_telemetry(telemetry.RATE_LIMIT_REJECT, {"retry_after": retry_after})
            raise RateLimited(retry_after)
        started = time.monotonic()
        stopping = self._driver.stopping
        while not limiter.acquire(message, timeout=0.5):
            # acquire() gives up at once when the refill needs longer than its
            # timeout: sleep until then (close() wakes it) instead of spinning.
            if stopping.wait(max(0.0, limiter.retry_after(message) - 0.5)):
                raise NotConnectedError("the client is closing")
        self._emit_telemetry(telemetry.RATE_LIMIT_WAIT, {"duration": time.monotonic() - started})

    def _internal_request_async(self, method: str, params: Any, *, charge: bool = False) -> Future[Any]:
        """A request the library makes; its response is not delivered to the user."""
        message, payload = jsonrpc.encode_request(method, params)
        return self._send_tracked(
            message["id"],
            method,
            message,
            payload,
            self.config.request_timeout,
            resolve_with="response",
            internal=True,
            charge=charge,
        )

    def _internal_request(self, method: str, params: Any) -> Any:
        future = self._internal_request_async(method, params)
        response = future.result(self.config.request_timeout)
        if isinstance(response, dict) and "error" in response:
            raise jsonrpc.error_from_response(response, method)
        return response.get("result") if isinstance(response, dict) else response

    def _send_control(self, req: Any) -> Future[Any] | None:
        """Send one subscription request; its acknowledgement is checked, not delivered."""
        message = req.message
        opcode, payload = encode(message)
        if req.request_id is None:
            self._send(opcode, payload, message, internal=True)
            return None
        future = self._send_tracked(
            req.request_id,
            req.method,
            message,
            payload,
            self.config.request_timeout,
            resolve_with="response",
            internal=True,
            opcode=opcode,
        )
        future.zw_request = req  # type: ignore[attr-defined]
        future.add_done_callback(functools.partial(self._check_ack, req))
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
            response = future.result()
            missing = self._dialect.check_ack(req, response)
            if not missing:
                return
            # The dialect says whether a later connection may be granted them:
            # Deribit 13009 (not authorized yet) and 10028 (rate limited) may,
            # an unknown channel never will.
            refusal = self._dialect.classify_refusal(req, response)
            unsubscribing = req.method is not None and "unsubscribe" in str(req.method).lower()
            kept = refusal.transient and not unsubscribing
            error = SubscriptionError(
                f"server did not confirm channels: {', '.join(missing)} ({refusal.reason})"
                + ("; they stay in the restore set" if kept else ""),
                missing,
            )
            if jsonrpc.classify(response) == "error":
                error.__cause__ = jsonrpc.error_from_response(response, req.method)
            if not refusal.transient and not unsubscribing:
                self._subs.remove(missing)  # refused for good: restoring would only be refused again
        future.zw_missing = missing  # type: ignore[attr-defined]
        future.zw_error = error  # type: ignore[attr-defined]
        self._emit_telemetry(telemetry.SUBSCRIPTION_ERROR, {"count": len(missing)}, channels=missing)
        self._report_error(error)

    def _await_acks(
        self,
        futures: list[Future[Any] | None],
        timeout: float | None,
        *,
        raise_missing: bool,
    ) -> list[str]:
        deadline = time.monotonic() + (self.config.request_timeout if timeout is None else timeout)
        missing: list[str] = []
        reasons: list[str] = []
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
            error = getattr(future, "zw_error", None)
            if error is not None:
                reasons.append(str(error))
        if missing and raise_missing:
            detail = f" ({'; '.join(reasons)})" if reasons else ""
            raise SubscriptionError(f"channels not confirmed: {', '.join(missing)}{detail}", missing)
        return missing

    # ------------------------------------------------------------------
    # callbacks, errors, telemetry (called by the driver too)

    def _emit(self, event: str, *args: Any, refusable: bool = False) -> None:
        """Call ``event``'s callbacks; what they raise is reported, not raised.

        ``refusable`` (the ``connect`` event only): a callback that raises
        :class:`ConnectError` refuses the connection, so the error is raised
        on and the connect sequence stops there (see ``Driver.refuse``).
        """
        for fn in self._callbacks.get(event, ()):
            try:
                fn(self, *args)
            except ConnectError as exc:
                if refusable:
                    raise
                self._callback_failed(event, fn, exc)
            except BaseException as exc:  # SystemExit too: a callback never ends a library thread
                self._callback_failed(event, fn, exc)

    def _callback_failed(self, event: str, fn: Any, exc: BaseException) -> None:
        self._driver.callback_errors += 1
        logger.error("%s: %s callback %r raised", self.name, event, fn, exc_info=exc)
        if not _logging_configured(logger) and (event, id(fn)) not in self._shown_failures:
            # Registered callbacks stay referenced, so their ids are unique here.
            self._shown_failures.add((event, id(fn)))
            _show_unlogged_callback_error(self.name, event, fn, exc)
        self._emit_telemetry(telemetry.CALLBACK_ERROR, {}, event=event, error=exc)
        if event != "error":
            wrapped = CallbackError(event, fn)
            wrapped.__cause__ = exc
            self._report_error(wrapped)

    def _report_error(self, exc: BaseException) -> None:
        self._driver.last_error = exc
        self._emit_telemetry(telemetry.ERROR, {}, error=exc)
        self._emit("error", exc)

    def _emit_telemetry(self, event: tuple[str, ...], measurements: dict[str, Any], /, **metadata: Any) -> None:
        handlers = telemetry.handlers_for(event)
        if handlers:
            telemetry.dispatch(handlers, event, measurements, {**self._meta, **metadata})


def _logging_configured(log: logging.Logger) -> bool:
    """True when a record from ``log`` reaches a handler other than the package's NullHandler."""
    current: logging.Logger | None = log
    while current is not None:
        if any(not isinstance(handler, logging.NullHandler) for handler in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


def _show_unlogged_callback_error(name: str, event: str, fn: Any, exc: BaseException) -> None:
    """Write a callback's failure, with its traceback, through ``logging.lastResort`` (stderr).

    The package's NullHandler keeps the library quiet until the application
    configures logging; a callback that raises would then lose its messages
    without a trace. What Python does for a library without a NullHandler
    (stderr, via ``logging.lastResort``) is done here for this one case, once
    per callback, so a callback failing on every message cannot flood stderr.
    """
    handler = logging.lastResort
    if handler is None or not logger.isEnabledFor(logging.ERROR):
        return
    record = logger.makeRecord(
        logger.name,
        logging.ERROR,
        __file__,
        0,
        "%s: %s callback %r raised (shown once; configure logging to see every failure)",
        (name, event, fn),
        (type(exc), exc, exc.__traceback__),
    )
    handler.handle(record)


def connect(url: str | Callable[[], str], **options: Any) -> Client:
    """Build a :class:`Client` and connect it.

    Raises:
        ConfigError: invalid option (named, with the closest option name for a typo).
        TypeError: an ``on_<event>`` callback does not take the event's arguments.
        ConnectError: every allowed attempt failed, or a fatal failure; the
            message names the URL (secrets masked), the attempts and the last cause.
    """
    return Client(url, **options).connect()


def open_clients() -> list[Client]:
    """Every client that is connected, connecting or reconnecting (not yet closed for good).

    For notebooks: re-running ``client = zw.connect(...)`` in a cell leaves the
    previous client running; this lists it (see :func:`close_all`).
    """
    return [driver.host for driver in list(_live_drivers)]


def close_all(timeout: float | None = None) -> int:
    """Close every open client (:func:`open_clients`); returns how many were closed.

    Args:
        timeout: bound on each client's close (default: its ``close_timeout``).
    """
    clients = open_clients()
    for client in clients:
        client.close(timeout)
    return len(clients)


# help(zw.connect), help(zw.Client) and notebook completion list every option
# (generated from ClientConfig, so there is no second list to keep in step).
_URL_PARAMETER = inspect.Parameter("url", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str | Callable[[], str])
Client.__signature__ = options_signature(_URL_PARAMETER)  # type: ignore[attr-defined]
connect.__signature__ = options_signature(_URL_PARAMETER, returns=Client)  # type: ignore[attr-defined]
if Client.__doc__ and connect.__doc__:  # None under python -OO
    Client.__doc__ += options_doc()
    connect.__doc__ += options_doc()


def _heartbeat_seconds(value: float) -> float | int:
    # Deribit's public/set_heartbeat takes an integer; 30.0 is sent as 30.
    return int(value) if value == int(value) else value

"""A real WebSocket server on loopback for tests, with fault injection.

:class:`MockWebSocketServer` is built on the threaded server of the
``websockets`` library (``websockets.sync.server.serve``): every frame on the
wire is real, so clients are tested against genuine handshakes, close codes,
pings, TLS and TCP failures. Nothing is mocked.

Example::

    from zen_websocket.testing import MockWebSocketServer

    with MockWebSocketServer(echo=True) as server:
        ...  # connect a client to server.url and send "hello"
        server.assert_message_sent("hello")
        server.inject_message({"type": "update", "seq": 1})
        server.drop_connections()  # TCP gone, no close frame

Threads (all named ``mock-ws-...`` and joined by :meth:`MockWebSocketServer.stop`):

* ``mock-ws-accept-<port>``: accepts TCP connections on the listening socket.
* ``mock-ws-conn-<id>``: one per connection; TLS and opening handshake, then
  the message loop that records messages and calls the handler.
* ``mock-ws-recv-<id>``: one per connection; the ``websockets`` thread reading
  the socket (renamed by us).
* ``mock-ws-timer-<port>``: runs timed actions (fault plans, timed stalls,
  emulator heartbeats and pings).
* ``mock-ws-stream-<n>``: one per :meth:`MockWebSocketServer.start_stream` feed.
* ``mock-ws-close-<id>``: short-lived, closes a connection without blocking the
  thread that asked (e.g. a timer or the receive thread).

Locking: ``MockWebSocketServer._cond`` (a Condition over one lock) guards the
recorded state (``received``, connections, counters, plans, handshake
faults). It is never held while sending, closing or calling user code.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import http
import itertools
import json
import logging
import os
import re
import selectors
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast

from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve
from websockets.typing import Subprotocol

from ._tls import TLSMaterial

__all__ = ["MockWebSocketServer", "MockConnection", "StreamHandle", "Timer"]

logger = logging.getLogger(__name__)

Message = str | bytes
"""A WebSocket message as recorded: ``str`` for text frames, ``bytes`` for binary."""

Handler = Callable[["MockConnection", Message], Any]
Expected = str | bytes | re.Pattern[str] | re.Pattern[bytes] | Mapping[str, Any] | Callable[[Message], bool]

# Close codes an endpoint must never put in a close frame (RFC 6455, 7.4.1).
_RESERVED_CLOSE_CODES = frozenset({1004, 1005, 1006, 1015})

_FRAME_KINDS = {
    Opcode.TEXT: "text",
    Opcode.BINARY: "binary",
    Opcode.CONT: "continuation",
    Opcode.PING: "ping",
    Opcode.PONG: "pong",
    Opcode.CLOSE: "close",
}


def encode_message(data: Any) -> Message:
    """Turn ``data`` into a WebSocket message: str/bytes as is, dict/list as JSON text.

    Raises:
        TypeError: For any other type.
    """
    if isinstance(data, str | bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    if isinstance(data, dict | list):
        return json.dumps(data, separators=(",", ":"))
    raise TypeError(f"cannot send {type(data).__name__}: expected str, bytes, dict or list")


def _decode_json(message: Message) -> Any:
    try:
        return json.loads(message)
    except (ValueError, TypeError):
        return _NO_JSON


_NO_JSON = object()


def _partial_match(expected: Mapping[str, Any], actual: Any) -> bool:
    if not isinstance(actual, dict):
        return False
    for key, value in expected.items():
        if key not in actual:
            return False
        if isinstance(value, Mapping):
            if not _partial_match(value, actual[key]):
                return False
        elif actual[key] != value:
            return False
    return True


def message_matches(expected: Expected, message: Message) -> bool:
    """Whether ``message`` matches ``expected`` (see :meth:`MockWebSocketServer.assert_message_sent`)."""
    if isinstance(expected, str | bytes):
        return message == expected
    if isinstance(expected, re.Pattern):
        if isinstance(expected.pattern, str) != isinstance(message, str):
            return False
        return expected.search(message) is not None  # type: ignore[arg-type]
    if isinstance(expected, Mapping):
        return _partial_match(expected, _decode_json(message))
    if callable(expected):
        try:
            return bool(expected(message))
        except Exception:
            # A predicate written for one message shape (e.g. json.loads(m)["id"])
            # fails on other messages: that is "no match", not an error.
            return False
    raise TypeError(f"unsupported expectation {expected!r}")


def _short(message: Message, limit: int = 200) -> str:
    text = repr(message)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_close_code(code: int) -> None:
    if code in _RESERVED_CLOSE_CODES or not (1000 <= code <= 4999) or 1016 <= code <= 2999:
        raise ValueError(f"close code {code} cannot be sent in a close frame (use drop_connections() for 1006)")


# --------------------------------------------------------------------------- timers


class Timer:
    """Handle on an action scheduled by :meth:`MockConnection.call_later` and friends."""

    def __init__(self, fn: Callable[[], None], interval: float | None) -> None:
        self.fn = fn
        self.interval = interval
        self.cancelled = False

    def cancel(self) -> None:
        """Stop the action from running (again). Idempotent."""
        self.cancelled = True


class _Scheduler:
    """Runs timed actions in one named thread; ``stop()`` wakes it at once.

    Actions must not block for long: closing a connection from an action goes
    through ``MockConnection.close(wait=False)``.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        # Guards _heap and _stopped.
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._stopped = False
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        # Daemon so a test that forgets stop() cannot hang interpreter exit.
        self.thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(2.0)

    def call_later(self, delay: float, fn: Callable[[], None], interval: float | None = None) -> Timer:
        timer = Timer(fn, interval)
        with self._cond:
            if self._stopped:
                timer.cancelled = True
                return timer
            heapq.heappush(self._heap, (time.monotonic() + max(delay, 0.0), next(self._seq), timer))
            self._cond.notify_all()
        return timer

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    if not self._heap:
                        self._cond.wait()
                        continue
                    due, _, timer = self._heap[0]
                    remaining = due - time.monotonic()
                    if remaining > 0:
                        self._cond.wait(remaining)
                        continue
                    heapq.heappop(self._heap)
                    if not timer.cancelled:
                        break
            try:
                timer.fn()
            except Exception:
                logger.exception("mock server timer action failed")
            if timer.interval is not None and not timer.cancelled:
                with self._cond:
                    if not self._stopped:
                        heapq.heappush(self._heap, (due + timer.interval, next(self._seq), timer))


# --------------------------------------------------------------------------- sockets


class _GatedSocket:
    """Wraps a connection's socket so the server can play a half-open peer.

    While stalled, ``recv`` blocks (incoming bytes stay in the kernel buffer:
    no pings answered, no messages processed, the client's send window fills)
    and ``sendall`` holds outgoing bytes until :meth:`resume`. Everything else
    is delegated to the real socket.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        # Guards _stalled, _closed, _aborted and _pending.
        self._cond = threading.Condition()
        # Serializes writes so bytes held during a stall go out before newer ones.
        self._send_lock = threading.Lock()
        self._stalled = False
        self._closed = False
        self._aborted = False
        self._pending: list[bytes] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    @property
    def raw(self) -> socket.socket:
        return self._sock

    @property
    def stalled(self) -> bool:
        return self._stalled

    def fileno(self) -> int:
        return self._sock.fileno()

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self._stalled:
            with self._cond:
                while self._stalled and not self._closed:
                    self._cond.wait()
        return self._sock.recv(bufsize, flags)

    def sendall(self, data: bytes, flags: int = 0) -> None:
        with self._send_lock:
            with self._cond:
                if self._aborted:
                    raise BrokenPipeError("connection dropped by the mock server")
                if self._stalled and not self._closed:
                    self._pending.append(bytes(data))
                    return
                pending, self._pending = self._pending, []
            for chunk in pending:
                self._sock.sendall(chunk)
            self._sock.sendall(data, flags)

    def shutdown(self, how: int) -> None:
        if self._aborted:
            return  # keep the peer's view of an abrupt drop: no FIN after the fact
        self._sock.shutdown(how)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._sock.close()

    def stall(self) -> None:
        with self._cond:
            self._stalled = True

    def resume(self) -> None:
        with self._cond:
            if not self._stalled:
                return
            self._stalled = False
            self._cond.notify_all()
        with self._send_lock:
            with self._cond:
                pending, self._pending = self._pending, []
            try:
                for chunk in pending:
                    self._sock.sendall(chunk)
            except OSError:
                pass  # the peer went away while we were stalled

    def abort(self, rst: bool) -> None:
        """Make the TCP connection disappear without a close frame."""
        with self._cond:
            self._aborted = True
            self._closed = True
            self._pending.clear()
            self._cond.notify_all()
        with contextlib.suppress(OSError):
            if rst:
                # SO_LINGER with a zero timeout: close() sends RST, not FIN.
                # SHUT_RD sends nothing but wakes our reader, which closes.
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self._sock.shutdown(socket.SHUT_RD)
            else:
                self._sock.shutdown(socket.SHUT_RDWR)


def _abort_raw(sock: socket.socket, rst: bool = True) -> None:
    with contextlib.suppress(OSError):
        if rst:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


@dataclass
class _Attempt:
    """One accepted TCP connection, from accept() to the end of its thread."""

    number: int
    sock: socket.socket
    fault: tuple[Any, ...] | None
    thread: threading.Thread | None = None
    ws: _WSConnection | None = None


_local = threading.local()


class _WSConnection(ServerConnection):
    """websockets' server connection, with a gated socket and frame hooks."""

    def __init__(
        self,
        owner: MockWebSocketServer,
        attempt: _Attempt,
        sock: socket.socket,
        protocol: Any,
        server: Server,
        **kwargs: Any,
    ) -> None:
        self.gate = _GatedSocket(sock)
        self.owner = owner
        self.mock = MockConnection(owner, self, attempt.number)
        super().__init__(cast(socket.socket, self.gate), protocol, server, **kwargs)
        self.recv_events_thread.name = f"mock-ws-recv-{attempt.number}"
        # Published last: stop() reads attempt.ws from another thread.
        attempt.ws = self

    def process_event(self, event: Any) -> None:
        super().process_event(event)
        if isinstance(event, Frame):
            # Runs in the receive thread: hooks must not block or join it.
            try:
                self.owner._frame_received(self.mock, event)
            except Exception:
                logger.exception("mock server frame hook failed")


class _Listener:
    """A listening socket and the thread accepting on it."""

    def __init__(self, sock: socket.socket, owner: MockWebSocketServer) -> None:
        self.sock = sock
        self.owner = owner
        self._wake_r, self._wake_w = socket.socketpair()
        port = sock.getsockname()[1]
        # Daemon so a forgotten stop() cannot hang interpreter exit; stop() joins it.
        self.thread = threading.Thread(target=self._run, name=f"mock-ws-accept-{port}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        selector = selectors.DefaultSelector()
        try:
            selector.register(self._wake_r, selectors.EVENT_READ)
            selector.register(self.sock, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_r in ready:
                    return
                try:
                    sock, _addr = self.sock.accept()
                except BlockingIOError:
                    continue
                except OSError:
                    return
                if not self.owner._on_accept(sock, self):
                    return
        except Exception:
            logger.exception("mock server accept loop failed")
        finally:
            selector.close()

    def close(self) -> None:
        """Stop accepting and close the listening socket: new connects are refused."""
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(2.0)
        with contextlib.suppress(OSError):
            self.sock.close()
        self._wake_r.close()
        self._wake_w.close()


# --------------------------------------------------------------------------- connection


class MockConnection:
    """The server side of one client connection, as seen by handlers and tests.

    Attributes:
        id: Sequence number of the TCP connection on this server (from 1).
        path: Request path of the opening handshake, with the query string.
        request_headers: Headers of the opening handshake request.
        received: Messages received on this connection, in order.
        session: Free-form per-connection state for handlers and emulators.
        pings_received: Payloads of ping frames received from the client.
        pongs_received: Payloads of pong frames received from the client.
    """

    def __init__(self, server: MockWebSocketServer, ws: _WSConnection, conn_id: int) -> None:
        self.id = conn_id
        self.server = server
        self._ws = ws
        self.path = ""
        self.request_headers: dict[str, str] = {}
        self.received: list[Message] = []
        self.session: dict[str, Any] = {}
        self.pings_received: list[bytes] = []
        self.pongs_received: list[bytes] = []
        self.opened_at: float | None = None
        self._timers: list[Timer] = []
        # Guards _timers and _stall_timer.
        self._lock = threading.Lock()
        self._stall_timer: Timer | None = None

    def __repr__(self) -> str:
        return f"<MockConnection id={self.id} path={self.path!r} open={self.is_open}>"

    @property
    def ws(self) -> ServerConnection:
        """The underlying ``websockets`` connection (escape hatch)."""
        return self._ws

    @property
    def is_open(self) -> bool:
        """Whether the WebSocket connection is open."""
        return self._ws.protocol.state.name == "OPEN"

    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol, if any."""
        return self._ws.subprotocol

    @property
    def remote_address(self) -> Any:
        """The client's ``(host, port)``."""
        try:
            return self._ws.remote_address
        except OSError:
            return None

    @property
    def close_code(self) -> int | None:
        """Close code of the connection once closed (1006 when dropped)."""
        return self._ws.close_code

    @property
    def stalled(self) -> bool:
        """Whether the connection is currently stalled."""
        return self._ws.gate.stalled

    def send(self, data: Any) -> None:
        """Send ``data`` (str, bytes, or dict/list as JSON text).

        Raises:
            websockets.exceptions.ConnectionClosed: If the connection is closed.
        """
        self._ws.send(encode_message(data))

    def close(self, code: int = 1000, reason: str = "", *, wait: bool = True) -> None:
        """Close with a proper close handshake.

        Args:
            code: Close code to send.
            reason: Close reason to send.
            wait: Wait for the handshake to finish (at most ``close_timeout``).
                Forced off in the receive and timer threads, which must not block.
        """
        _check_close_code(code)
        current = threading.current_thread()
        if wait and current not in (self._ws.recv_events_thread, self.server._scheduler.thread):
            self._close_now(code, reason)
        else:
            self.server._spawn(f"mock-ws-close-{self.id}", lambda: self._close_now(code, reason))

    def _close_now(self, code: int, reason: str) -> None:
        self._ws.gate.resume()
        self._ws.close(code, reason)

    def drop(self, rst: bool = False) -> None:
        """Make the TCP connection disappear without a close frame.

        Args:
            rst: Reset the connection (SO_LINGER 0: the client gets ECONNRESET)
                instead of a plain FIN.
        """
        self._ws.gate.abort(rst)
        # The shutdown wakes websockets' reader, which sees EOF and closes the
        # connection itself. Closing it from this thread too would race that
        # reader (data it already read, fed after our EOF, is logged by
        # websockets as an internal error), so only do it if the reader is stuck.
        reader = self._ws.recv_events_thread
        if reader is not threading.current_thread():
            reader.join(0.5)
        if reader is threading.current_thread() or reader.is_alive():
            self._ws.close_socket()

    def stall(self, seconds: float | None = None) -> None:
        """Play a half-open peer: read nothing, answer no ping, send nothing.

        Outgoing messages (injected, handler replies, pings) are held and sent
        when the stall ends.

        Args:
            seconds: Stall duration; ``None`` stalls until :meth:`resume`.
        """
        with self._lock:
            if self._stall_timer is not None:
                self._stall_timer.cancel()
                self._stall_timer = None
        self._ws.gate.stall()
        self.server._notify()
        if seconds is not None:
            timer = self.call_later(seconds, self.resume)
            with self._lock:
                self._stall_timer = timer

    def resume(self) -> None:
        """End a stall: process what the client sent meanwhile, flush held output."""
        with self._lock:
            if self._stall_timer is not None:
                self._stall_timer.cancel()
                self._stall_timer = None
        self._ws.gate.resume()
        self.server._notify()

    def ping(self, payload: bytes | str | None = None) -> threading.Event:
        """Send a ping; the returned event is set when the matching pong arrives.

        Args:
            payload: Ping payload; ``None`` picks four random bytes.
        """
        return self._ws.ping(payload)

    def call_later(self, delay: float, fn: Callable[[], None]) -> Timer:
        """Run ``fn`` once after ``delay`` seconds in the timer thread (cancelled on close)."""
        return self._track(self.server._scheduler.call_later(delay, fn))

    def call_every(self, interval: float, fn: Callable[[], None], first_delay: float | None = None) -> Timer:
        """Run ``fn`` every ``interval`` seconds in the timer thread (cancelled on close)."""
        delay = interval if first_delay is None else first_delay
        return self._track(self.server._scheduler.call_later(delay, fn, interval=interval))

    def _track(self, timer: Timer) -> Timer:
        with self._lock:
            self._timers = [t for t in self._timers if not t.cancelled or t.interval is not None]
            self._timers.append(timer)
        return timer

    def _cancel_timers(self) -> None:
        with self._lock:
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()


class StreamHandle:
    """A running feed started by :meth:`MockWebSocketServer.start_stream` or an emulator.

    Attributes:
        sent: Number of messages sent so far.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent = 0
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the feed thread is alive."""
        return self.thread is not None and self.thread.is_alive()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the feed and join its thread. Idempotent."""
        self._stop.set()
        on_stop = getattr(self, "_on_stop", None)
        if on_stop is not None:
            on_stop()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)


# --------------------------------------------------------------------------- server


_FAULT_ARITY = {"drop": 2, "close": 3, "stall": 3, "reject": 2, "refuse": 2}


def _validate_fault(fault: Any) -> tuple[Any, ...] | None:
    if fault is None:
        return None
    if isinstance(fault, str):
        fault = (fault,)
    if not isinstance(fault, tuple) or not fault or fault[0] not in _FAULT_ARITY:
        raise ValueError(
            f"unknown fault {fault!r}: expected None or a tuple starting with one of {sorted(_FAULT_ARITY)}"
        )
    kind = fault[0]
    defaults: dict[str, tuple[Any, ...]] = {
        "drop": ("drop", 0.0),
        "close": ("close", 1000, 0.0),
        "stall": ("stall", 0.0, None),
        "reject": ("reject", 503),
        "refuse": ("refuse", 0.5),
    }
    full = fault + defaults[kind][len(fault) :]
    if len(full) != _FAULT_ARITY[kind]:
        raise ValueError(f"fault {fault!r} has too many items")
    if kind == "close":
        _check_close_code(full[1])
    return full


@dataclass
class _Rejection:
    status: int
    remaining: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


class MockWebSocketServer:
    """A WebSocket server on loopback for tests, with fault injection.

    Start it with ``with MockWebSocketServer() as server:`` (or
    :meth:`start` / :meth:`stop`) and point a client at :attr:`url`.

    Example::

        import re
        from zen_websocket.testing import MockWebSocketServer

        def handler(conn, message):
            if message == "ping":
                return "pong"  # a return value is sent back as the reply

        with MockWebSocketServer(handler=handler) as server:
            ...  # a client connects to server.url and sends {"op": "subscribe", "args": ["x"]}
            server.assert_message_sent({"op": "subscribe"})  # partial JSON match
            server.assert_message_sent(re.compile(r'"args"'))
            server.simulate_disconnect(1012, "restart")

    Fault injection: :meth:`simulate_disconnect` (close handshake),
    :meth:`drop_connections` (no close frame), :meth:`stall` (half-open
    peer), :meth:`refuse_connections` (ECONNREFUSED), :meth:`reject_handshake`
    (HTTP status), :meth:`hang_handshake`, :meth:`reset_during_handshake`,
    :meth:`restart`, and per-connection :meth:`plan`.

    Subclasses (the exchange emulators) override the extension points
    :meth:`connection_opened`, :meth:`message_received`,
    :meth:`connection_closed`, :meth:`frame_received` and
    :meth:`check_handshake`.

    Args:
        host: Interface to listen on (loopback only is sensible).
        port: Port; 0 picks a free one (see :attr:`port`).
        tls: Serve ``wss://`` with a throwaway CA (needs ``trustme``); see
            :meth:`client_ssl_context` and :attr:`ca_pem_path`.
        handler: ``handler(conn, message)`` called for each received message
            (after it is recorded) in the connection's thread. A non-``None``
            return value (str, bytes, dict, list) is sent back.
        on_connect: ``on_connect(conn)`` called once per connection after the
            opening handshake, before any message is read.
        subprotocols: Subprotocols the server supports, by preference. A
            client offering none of them still connects, without subprotocol.
        echo: Send every received message back (after ``handler``, if the
            handler returned nothing).
        max_size: Largest incoming message in bytes; ``None``: no limit.
        compression: ``"deflate"`` to negotiate permessage-deflate; off by default.
        open_timeout: Bound on the TLS and opening handshakes, in seconds.
        close_timeout: Bound on a closing handshake the server starts, in seconds.
        stop_timeout: Bound on :meth:`stop` before sockets are force-closed.
        history: Closed connections to remember in :attr:`all_connections`
            (with their handshake records); ``None`` remembers every one.
            Long soak runs bound it so the server's memory stays flat.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: bool = False,
        handler: Handler | None = None,
        on_connect: Callable[[MockConnection], None] | None = None,
        subprotocols: Sequence[str] | None = None,
        echo: bool = False,
        max_size: int | None = None,
        compression: str | None = None,
        open_timeout: float | None = 5.0,
        close_timeout: float = 1.0,
        stop_timeout: float = 2.0,
        history: int | None = None,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self.tls = tls
        self.handler = handler
        self.on_connect = on_connect
        self.subprotocols = list(subprotocols) if subprotocols else None
        self.echo = echo
        self.max_size = max_size
        self.compression = compression
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self.stop_timeout = stop_timeout
        if history is not None and history < 0:
            raise ValueError("history must be >= 0 or None")
        self.history = history

        self._tls_material: TLSMaterial | None = None
        self.ssl_context: ssl.SSLContext | None = None
        """Server-side TLS context when ``tls=True``."""
        self.ca_pem_path: str | None = None
        """Path of a PEM file holding the throwaway CA (``tls=True``), deleted on stop."""

        # Guards every field below; notified whenever recorded state changes.
        self._cond = threading.Condition()
        self._received: list[Message] = []
        self._open: list[MockConnection] = []
        self._all: list[MockConnection] = []
        self._attempts: dict[int, _Attempt] = {}
        self._aux_threads: set[threading.Thread] = set()
        self._streams: list[StreamHandle] = []
        self._attempt_numbers = itertools.count(1)
        self._connection_count = 0
        self._attempt_count = 0
        self._rejected_count = 0
        self._generation = 0
        self.handshake_headers: list[dict[str, str]] = []
        """Request headers of each accepted opening handshake, in order."""
        self.handshake_paths: list[str] = []
        """Request path (with query) of each accepted opening handshake, in order."""
        self.pings_received: list[bytes] = []
        """Payloads of pings received from clients (all connections, in order)."""
        self.pongs_received: list[bytes] = []
        """Payloads of pongs received from clients (all connections, in order)."""
        self.errors: list[BaseException] = []
        """Exceptions raised by handlers (the connection is then closed with 1011)."""
        self._plan: list[tuple[Any, ...] | None] = []
        self._rejection: _Rejection | None = None
        self._hang_event: threading.Event | None = None
        self._reset_times = 0
        self._refusing = False

        self._listener: _Listener | None = None
        self._ws_server: Server | None = None
        self._scheduler = _Scheduler("mock-ws-timer")
        self._state = "new"  # new -> running -> stopped
        # Serializes start/stop/refuse/restart (listener changes).
        self._lifecycle_lock = threading.RLock()

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> MockWebSocketServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._state} {self.url if self._port else ''}>"

    def start(self) -> MockWebSocketServer:
        """Bind, listen and start accepting. Returns ``self``.

        Raises:
            RuntimeError: If the server was already started.
        """
        with self._lifecycle_lock:
            if self._state != "new":
                raise RuntimeError(f"server already {self._state}; create a new one")
            if self.tls:
                self._tls_material = TLSMaterial()
                self.ssl_context = self._tls_material.server_context()
                self.ca_pem_path = self._tls_material.write_ca_pem()
            sock = socket.create_server((self.host, self._requested_port))
            self._ws_server = serve(
                self._serve_connection,
                sock=sock,
                ssl=self.ssl_context,
                subprotocols=cast(Sequence[Subprotocol], self.subprotocols),
                select_subprotocol=self._select_subprotocol if self.subprotocols else None,
                compression=self.compression,
                process_request=self._process_request,
                server_header=None,
                open_timeout=self.open_timeout,
                # The server never pings unless asked (ping_all, emulators).
                ping_interval=None,
                ping_timeout=None,
                close_timeout=self.close_timeout,
                max_size=self.max_size,
                create_connection=cast(Any, self._create_connection),
            )
            listen_sock = self._ws_server.socket
            self._port = listen_sock.getsockname()[1]
            self._scheduler = _Scheduler(f"mock-ws-timer-{self._port}")
            self._scheduler.start()
            self._listener = _Listener(listen_sock, self)
            self._listener.start()
            self._state = "running"
        logger.debug("mock server listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Close every connection and socket and join every thread. Idempotent.

        Open connections get a close frame (1001 going away); whatever is
        still alive after ``stop_timeout`` seconds (stalled or dead clients,
        hung handshakes) is force-closed.
        """
        with self._lifecycle_lock:
            if self._state != "running":
                self._state = "stopped"
                return
            self._state = "stopped"
            listener, self._listener = self._listener, None
        deadline = time.monotonic() + self.stop_timeout
        with self._cond:
            streams = list(self._streams)
            hang = self._hang_event
            self._cond.notify_all()
        for stream in streams:
            stream.stop()
        if hang is not None:
            hang.set()
        if listener is not None:
            listener.close()
        self._scheduler.stop()
        assert self._ws_server is not None
        # Handshakes still in progress now answer 503 (see ServerConnection.handshake).
        self._ws_server.socket_closed.set()
        for conn in self.connections:
            conn.resume()
            with contextlib.suppress(ValueError):
                conn.close(1001, "server stopping", wait=False)
        self._join_all(deadline)
        # Force: whatever did not finish gets its socket closed under it.
        with self._cond:
            leftovers = list(self._attempts.values())
        for attempt in leftovers:
            if attempt.ws is not None:
                attempt.ws.gate.abort(rst=True)
                attempt.ws.close_socket()
            else:
                _abort_raw(attempt.sock)
        self._join_all(time.monotonic() + 1.0)
        with self._cond:
            alive = [t.name for t in self._threads() if t.is_alive()]
        if alive:
            logger.warning("mock server threads still alive after stop: %s", alive)
        with contextlib.suppress(OSError):
            self._ws_server.shutdown_watcher.close()
        with contextlib.suppress(OSError):
            self._ws_server.shutdown_notifier.close()
        if self.ca_pem_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.ca_pem_path)

    def _threads(self) -> list[threading.Thread]:
        # Caller holds self._cond.
        threads = [a.thread for a in self._attempts.values() if a.thread is not None]
        threads += [a.ws.recv_events_thread for a in self._attempts.values() if a.ws is not None]
        threads += [c._ws.recv_events_thread for c in self._all]
        threads += list(self._aux_threads)
        return threads

    def _join_all(self, deadline: float) -> None:
        with self._cond:
            threads = self._threads()
        for thread in threads:
            if thread is threading.current_thread():
                continue
            thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def running(self) -> bool:
        """Whether the server was started and not stopped."""
        return self._state == "running"

    @property
    def port(self) -> int:
        """The listening port (the same across refuse/restart)."""
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def url(self) -> str:
        """``ws://host:port`` or ``wss://host:port``."""
        scheme = "wss" if self.tls else "ws"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client ``SSLContext`` trusting this server's CA (verification on).

        Raises:
            RuntimeError: If the server is not started with ``tls=True``.
        """
        if self._tls_material is None:
            raise RuntimeError("client_ssl_context() needs MockWebSocketServer(tls=True), started")
        return self._tls_material.client_context()

    # ------------------------------------------------------------------ recorded state

    @property
    def received(self) -> list[Message]:
        """Messages received from all clients, in order (a copy)."""
        with self._cond:
            return list(self._received)

    def clear_received(self) -> None:
        """Forget received messages (server-wide and per connection)."""
        with self._cond:
            self._received.clear()
            for conn in self._all:
                conn.received.clear()

    @property
    def connections(self) -> list[MockConnection]:
        """Currently open connections (closing ones excluded), oldest first (a copy)."""
        with self._cond:
            return [c for c in self._open if c.is_open]

    @property
    def all_connections(self) -> list[MockConnection]:
        """Every connection that completed the opening handshake, oldest first."""
        with self._cond:
            return list(self._all)

    @property
    def connection_count(self) -> int:
        """Number of accepted opening handshakes since start."""
        with self._cond:
            return self._connection_count

    @property
    def attempt_count(self) -> int:
        """Number of TCP connections accepted since start (including rejected handshakes)."""
        with self._cond:
            return self._attempt_count

    @property
    def rejected_count(self) -> int:
        """Number of opening handshakes answered with an HTTP error or reset."""
        with self._cond:
            return self._rejected_count

    # ------------------------------------------------------------------ waiting

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 1.0) -> bool:
        """Wait until ``predicate()`` is true.

        The predicate is re-checked (holding the server's lock) whenever the
        server records something (message, connection, ping, pong, stall...),
        and at least every 50 ms for state the server cannot see change.

        Returns:
            The last value of the predicate.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if predicate():
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                # The 50 ms cap only matters for predicates on outside state.
                self._cond.wait(min(remaining, 0.05))

    def wait_for_message(self, expected: Expected, timeout: float = 1.0) -> Message | None:
        """Wait for a received message matching ``expected``; ``None`` on timeout.

        See :meth:`assert_message_sent` for what ``expected`` can be.
        """
        found: list[Message] = []

        def check() -> bool:
            for message in self._received:
                if message_matches(expected, message):
                    found.append(message)
                    return True
            return False

        self.wait_for(check, timeout)
        return found[0] if found else None

    def assert_message_sent(self, expected: Expected, timeout: float = 1.0) -> Message:
        """Assert that a client sent a message matching ``expected`` (waiting up to ``timeout``).

        Args:
            expected: An exact ``str``/``bytes``; a compiled regular expression
                (searched); a dict, matched partially against the message
                decoded as JSON (every key of ``expected`` must be present
                with an equal value, nested dicts matched the same way); or a
                predicate ``fn(message) -> bool`` (exceptions count as no match).
            timeout: Seconds to wait.

        Returns:
            The first matching message.

        Raises:
            AssertionError: Listing the messages received, if none matched.
        """
        message = self.wait_for_message(expected, timeout)
        if message is None:
            received = self.received
            shown = "\n".join(f"  {i}: {_short(m)}" for i, m in enumerate(received[-20:]))
            more = f" (last 20 of {len(received)})" if len(received) > 20 else ""
            raise AssertionError(
                f"no message matching {expected!r} within {timeout:g}s; received {len(received)}{more}:\n{shown or '  (nothing)'}"
            )
        return message

    def wait_for_connections(self, n: int = 1, timeout: float = 1.0) -> bool:
        """Wait until at least ``n`` connections are open at once; returns whether they are."""
        return self.wait_for(lambda: len(self.connections) >= n, timeout)

    # ------------------------------------------------------------------ sending

    def inject_message(self, data: Any) -> int:
        """Send ``data`` to every open connection (dict/list as JSON text).

        Returns:
            The number of connections it was sent to.
        """
        message = encode_message(data)
        sent = 0
        for conn in self.connections:
            try:
                conn.send(message)
                sent += 1
            except ConnectionClosed:
                pass
        return sent

    def ping_all(self, payload: bytes | str | None = None) -> int:
        """Send a ping to every open connection; returns how many got one.

        Args:
            payload: Ping payload; ``None`` uses four random bytes per ping
                (a fixed payload cannot be reused before its pong arrives).
        """
        sent = 0
        for conn in self.connections:
            try:
                conn.ping(payload)
                sent += 1
            except ConnectionClosed:
                pass
        return sent

    # ------------------------------------------------------------------ faults

    def simulate_disconnect(self, code: int = 1000, reason: str = "") -> int:
        """Close every open connection with a proper close handshake.

        Waits (at most ``close_timeout``) for the clients to answer.

        Returns:
            The number of connections closed.
        """
        _check_close_code(code)
        conns = self.connections
        threads = [self._spawn(f"mock-ws-close-{c.id}", functools.partial(c._close_now, code, reason)) for c in conns]
        deadline = time.monotonic() + self.close_timeout + 0.5
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return len(conns)

    def drop_connections(self, rst: bool = False) -> int:
        """Make every connection's TCP disappear without a close frame (client sees 1006).

        Args:
            rst: Send a TCP reset (SO_LINGER 0) instead of a FIN.

        Returns:
            The number of connections dropped.
        """
        conns = self.connections
        for conn in conns:
            conn.drop(rst)
        self.wait_for(lambda: not any(c in self._open for c in conns), self.close_timeout)
        return len(conns)

    def stall(self, seconds: float | None = None) -> int:
        """Stall every open connection (a half-open peer); see :meth:`MockConnection.stall`.

        Connections opened later are not stalled.

        Args:
            seconds: Duration; ``None`` until :meth:`resume`.

        Returns:
            The number of connections stalled.
        """
        conns = self.connections
        for conn in conns:
            conn.stall(seconds)
        return len(conns)

    def resume(self) -> None:
        """End every stall."""
        for conn in self.connections:
            conn.resume()

    def refuse_connections(self, flag: bool = True) -> None:
        """Refuse new TCP connections for real (the client gets ECONNREFUSED).

        While refusing, the listening socket is closed; existing connections
        are kept. ``refuse_connections(False)`` listens again on the same port.

        Raises:
            OSError: If the port cannot be bound again.
        """
        with self._lifecycle_lock:
            if self._state != "running":
                raise RuntimeError("server not running")
            if flag and self._listener is not None:
                listener, self._listener = self._listener, None
                listener.close()
            elif not flag and self._listener is None:
                self._listen_again()
            self._refusing = flag

    def restart(self) -> None:
        """Drop every connection (no close frame) and listen again on the same port."""
        with self._lifecycle_lock:
            if self._state != "running":
                raise RuntimeError("server not running")
            if self._listener is not None:
                listener, self._listener = self._listener, None
                listener.close()
            self.drop_connections()
            self._listen_again()
            self._refusing = False

    def _listen_again(self) -> None:
        sock = socket.create_server((self.host, self.port))
        if self.ssl_context is not None:
            # Same wrapping as websockets' serve(): the TLS handshake happens in
            # the connection thread, under open_timeout.
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self._listener = _Listener(sock, self)
        self._listener.start()

    def reject_handshake(
        self,
        status: int | None = 503,
        times: int | None = None,
        headers: Mapping[str, str] | None = None,
        body: str = "",
    ) -> None:
        """Answer opening handshakes with an HTTP error instead of 101.

        Args:
            status: HTTP status (401, 403, 429, 503...); ``None`` accepts again.
            times: Reject only the next ``times`` handshakes; ``None``: until
                :meth:`accept_handshakes`.
            headers: Extra response headers, e.g. ``{"Retry-After": "1"}``.
            body: Response body (default: the status phrase).
        """
        with self._cond:
            if status is None:
                self._rejection = None
            else:
                self._rejection = _Rejection(int(status), times, dict(headers or {}), body)

    def accept_handshakes(self) -> None:
        """Stop rejecting handshakes (undo :meth:`reject_handshake`)."""
        self.reject_handshake(None)

    def hang_handshake(self, flag: bool = True) -> None:
        """Accept TCP (and TLS) but never answer the upgrade request.

        ``hang_handshake(False)`` releases the hung connections, which are then
        reset (their clients have timed out long ago) and serves normally.
        """
        with self._cond:
            if flag:
                if self._hang_event is None:
                    self._hang_event = threading.Event()
                return
            event, self._hang_event = self._hang_event, None
        if event is not None:
            event.set()

    def reset_during_handshake(self, times: int = 1) -> None:
        """For the next ``times`` connections: read the upgrade request, then reset TCP."""
        with self._cond:
            self._reset_times = times

    def plan(self, faults: Iterable[Any]) -> None:
        """Give successive TCP connections a fault each, in order (chaos tests).

        The first connection accepted after this call gets ``faults[0]``, the
        next one ``faults[1]``...; once the list is used up, connections
        behave normally. A new call replaces the remaining plan. Items:

        * ``None``: behave normally.
        * ``("drop", after)``: drop TCP (no close frame) ``after`` seconds
          after the opening handshake.
        * ``("close", code, after)``: close handshake with ``code`` after ``after`` s.
        * ``("stall", after, duration)``: stall after ``after`` s for
          ``duration`` s (``None``: until :meth:`resume`).
        * ``("reject", status)``: answer the opening handshake with ``status``.
        * ``("refuse", duration)``: this connection is reset at once (the
          kernel had already accepted it) and the server stops listening for
          ``duration`` s, so attempts meanwhile get ECONNREFUSED; they do not
          consume plan items.

        Example::

            server.plan([("reject", 503), ("refuse", 0.2), ("drop", 0.05), None])

        Raises:
            ValueError: For a malformed item.
        """
        validated = [_validate_fault(f) for f in faults]
        with self._cond:
            self._plan = validated

    @property
    def plan_remaining(self) -> int:
        """Number of plan items not yet used."""
        with self._cond:
            return len(self._plan)

    # ------------------------------------------------------------------ streams

    def start_stream(
        self,
        make_message: Callable[[int], Any],
        interval: float,
        count: int | None = None,
    ) -> StreamHandle:
        """Send numbered messages to every open connection from a background thread.

        Each connection gets ``make_message(1)``, ``make_message(2)``... (its
        own numbering, from its opening), one every ``interval`` seconds
        (0: as fast as possible), up to ``count`` messages per connection.
        A ``None`` message is skipped. Stopped by :meth:`StreamHandle.stop` or :meth:`stop`.

        Example::

            stream = server.start_stream(lambda seq: {"seq": seq}, interval=0.01, count=100)
        """
        counters: dict[int, int] = {}
        handle = self._new_stream()

        def wake() -> None:
            with self._cond:
                self._cond.notify_all()

        handle._on_stop = wake  # type: ignore[attr-defined]

        def tick() -> None:
            while not handle._stop.is_set():
                sent_any = False
                for conn in self.connections:
                    seq = counters.get(conn.id, 0) + 1
                    if count is not None and seq > count:
                        continue
                    counters[conn.id] = seq
                    message = make_message(seq)
                    if message is None:
                        continue
                    try:
                        conn.send(message)
                    except ConnectionClosed:
                        continue
                    handle.sent += 1
                    sent_any = True
                if not sent_any:
                    # Idle until a connection opens (or the stream stops).
                    with self._cond:
                        generation = self._generation

                        def changed(generation: int = generation) -> bool:
                            return handle._stop.is_set() or self._generation != generation or self._state != "running"

                        self._cond.wait_for(changed)
                    if self._state != "running":
                        return
                    continue
                if interval > 0:
                    handle._stop.wait(interval)

        self._start_stream_thread(handle, tick)
        return handle

    def start_feed(self, tick: Callable[[int], Any], interval: float, count: int | None = None) -> StreamHandle:
        """Call ``tick(seq)`` (seq from 1) every ``interval`` seconds from a background thread.

        Unlike :meth:`start_stream`, numbering is global: the emulators use it
        to publish numbered updates to whoever is subscribed at the time.
        """
        if interval <= 0 and count is None:
            raise ValueError("an endless feed needs interval > 0")
        handle = self._new_stream()

        def run() -> None:
            seq = 0
            while not handle._stop.is_set() and (count is None or seq < count):
                seq += 1
                tick(seq)
                handle.sent += 1
                if interval > 0:
                    handle._stop.wait(interval)

        self._start_stream_thread(handle, run)
        return handle

    def _new_stream(self) -> StreamHandle:
        with self._cond:
            if self._state != "running":
                raise RuntimeError("server not running")
            handle = StreamHandle(f"mock-ws-stream-{len(self._streams) + 1}")
            self._streams.append(handle)
        return handle

    def _start_stream_thread(self, handle: StreamHandle, target: Callable[[], None]) -> None:
        def run() -> None:
            try:
                target()
            except Exception:
                logger.exception("mock server stream %s failed", handle.name)

        # Daemon so a forgotten stop() cannot hang interpreter exit; stop() joins it.
        handle.thread = threading.Thread(target=run, name=handle.name, daemon=True)
        handle.thread.start()

    # ------------------------------------------------------------------ extension points

    def connection_opened(self, conn: MockConnection) -> None:
        """Called in the connection's thread after the opening handshake. Calls ``on_connect``."""
        if self.on_connect is not None:
            self.on_connect(conn)

    def message_received(self, conn: MockConnection, message: Message) -> Any:
        """Called for each message (already recorded); the return value is sent back.

        The default calls ``handler`` then, if it returned ``None`` and
        ``echo`` is on, echoes the message.
        """
        reply = None
        if self.handler is not None:
            reply = self.handler(conn, message)
        if reply is None and self.echo:
            reply = message
        return reply

    def connection_closed(self, conn: MockConnection) -> None:
        """Called in the connection's thread once the connection is closed."""

    def frame_received(self, conn: MockConnection, kind: str, payload: bytes) -> None:
        """Called in the receive thread for each frame (``kind``: text, binary, continuation, ping, pong, close).

        Must not block; use ``conn.close(..., wait=False)``.
        """

    def check_handshake(self, path: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
        """Return ``(status, body)`` to reject an opening handshake, ``None`` to accept."""
        return None

    # ------------------------------------------------------------------ internals

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _spawn(self, name: str, fn: Callable[[], None]) -> threading.Thread:
        def run() -> None:
            try:
                fn()
            except ConnectionClosed:
                pass
            except Exception:
                logger.exception("mock server helper thread %s failed", name)
            finally:
                with self._cond:
                    self._aux_threads.discard(thread)

        # Daemon so a forgotten stop() cannot hang interpreter exit; stop() joins it.
        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._cond:
            self._aux_threads.add(thread)
        thread.start()
        return thread

    def _on_accept(self, sock: socket.socket, listener: _Listener) -> bool:
        """Accept thread: start a connection thread. Returns False to stop accepting."""
        with self._cond:
            if self._state != "running":
                _abort_raw(sock)
                return False
            number = next(self._attempt_numbers)
            self._attempt_count += 1
            fault = self._plan.pop(0) if self._plan else None
            self._cond.notify_all()
        if fault is not None and fault[0] == "refuse":
            # Stop listening before resetting this client, so its next attempt is refused.
            self._refuse_for(fault[1], listener)
            _abort_raw(sock)
            return False
        attempt = _Attempt(number, sock, fault)
        # Not a daemon: stop() joins it (and force-closes its socket if needed).
        thread = threading.Thread(target=self._run_attempt, args=(attempt,), name=f"mock-ws-conn-{number}")
        attempt.thread = thread
        with self._cond:
            self._attempts[number] = attempt
        thread.start()
        return True

    def _refuse_for(self, duration: float, listener: _Listener) -> None:
        with self._lifecycle_lock:
            if self._listener is listener:
                self._listener = None
        # We are in the accept thread: closing the listener from here cannot join it.
        listener.close()

        def relisten() -> None:
            with self._lifecycle_lock:
                if self._state == "running" and self._listener is None and not self._refusing:
                    self._listen_again()

        self._scheduler.call_later(duration, relisten)

    def _run_attempt(self, attempt: _Attempt) -> None:
        _local.attempt = attempt
        try:
            assert self._ws_server is not None
            # websockets' per-connection handler: TLS handshake, opening
            # handshake (process_request below), then _serve_connection.
            self._ws_server.handler(attempt.sock, None)
        except Exception:
            logger.exception("mock server connection %d failed", attempt.number)
        finally:
            with self._cond:
                self._attempts.pop(attempt.number, None)
                self._cond.notify_all()

    def _create_connection(self, sock: socket.socket, protocol: Any, server: Server, **kwargs: Any) -> _WSConnection:
        attempt: _Attempt = _local.attempt
        return _WSConnection(self, attempt, sock, protocol, server, **kwargs)

    def _select_subprotocol(self, ws: ServerConnection, offered: Sequence[Subprotocol]) -> Subprotocol | None:
        for candidate in self.subprotocols or ():
            if candidate in offered:
                return Subprotocol(candidate)
        return None

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        assert isinstance(ws, _WSConnection)
        conn = ws.mock
        conn.path = request.path
        conn.request_headers = {k: v for k, v in request.headers.raw_items()}
        attempt: _Attempt = _local.attempt
        action: str | None = None
        rejection: _Rejection | None = None
        hang: threading.Event | None = None
        with self._cond:
            if attempt.fault is not None and attempt.fault[0] == "reject":
                rejection = _Rejection(attempt.fault[1], None)
            elif self._reset_times > 0:
                self._reset_times -= 1
                action = "reset"
            elif self._hang_event is not None:
                hang = self._hang_event
            elif self._rejection is not None:
                rejection = self._rejection
                if rejection.remaining is not None:
                    rejection.remaining -= 1
                    if rejection.remaining <= 0:
                        self._rejection = None
        if hang is not None:
            hang.wait()
            action = "reset"
        if action == "reset":
            with self._cond:
                self._rejected_count += 1
                self._cond.notify_all()
            ws.gate.abort(rst=True)
            ws.close_socket()
            return ws.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, "")
        if rejection is None:
            custom = self.check_handshake(conn.path, conn.request_headers)
            if custom is not None:
                rejection = _Rejection(custom[0], None, {}, custom[1])
        if rejection is not None:
            with self._cond:
                self._rejected_count += 1
                self._cond.notify_all()
            status = http.HTTPStatus(rejection.status)
            response = ws.respond(status, rejection.body or f"{status.value} {status.phrase}\n")
            for name, value in rejection.headers.items():
                response.headers[name] = value
            return response
        return None

    def _apply_fault(self, conn: MockConnection, fault: tuple[Any, ...]) -> None:
        kind = fault[0]
        if kind == "drop":
            conn.call_later(fault[1], conn.drop)
        elif kind == "close":
            code = fault[1]
            conn.call_later(fault[2], lambda: conn.close(code, "planned close", wait=False))
        elif kind == "stall":
            duration = fault[2]
            conn.call_later(fault[1], lambda: conn.stall(duration))

    def _serve_connection(self, ws: ServerConnection) -> None:
        """Connection thread, after a successful opening handshake."""
        assert isinstance(ws, _WSConnection)
        conn = ws.mock
        conn.opened_at = time.monotonic()
        attempt: _Attempt = _local.attempt
        with self._cond:
            self._open.append(conn)
            self._all.append(conn)
            self._connection_count += 1
            self._generation += 1
            self.handshake_headers.append(dict(conn.request_headers))
            self.handshake_paths.append(conn.path)
            self._cond.notify_all()
        try:
            if attempt.fault is not None:
                self._apply_fault(conn, attempt.fault)
            self.connection_opened(conn)
            for message in ws:
                with self._cond:
                    self._received.append(message)
                    conn.received.append(message)
                    self._cond.notify_all()
                reply = self.message_received(conn, message)
                if reply is not None:
                    conn.send(reply)
        except ConnectionClosed:
            pass
        except Exception as exc:
            logger.exception("mock server handler failed on connection %d", conn.id)
            with self._cond:
                self.errors.append(exc)
            with contextlib.suppress(ConnectionClosed):
                ws.close(1011, "handler error")
        finally:
            conn._cancel_timers()
            with self._cond:
                if conn in self._open:
                    self._open.remove(conn)
                self._forget_old_connections()
                self._cond.notify_all()
            try:
                self.connection_closed(conn)
            except Exception:
                logger.exception("mock server connection_closed hook failed")

    def _forget_old_connections(self) -> None:
        """Keep at most ``history`` closed connections (and their handshake records)."""
        assert self._cond._is_owned()  # type: ignore[attr-defined]
        if self.history is None:
            return
        closed = [c for c in self._all if c not in self._open]
        excess = len(closed) - self.history
        if excess <= 0:
            return
        forget = {id(c) for c in closed[:excess]}
        kept = [i for i, c in enumerate(self._all) if id(c) not in forget]
        # handshake_headers/paths are appended in step with _all.
        self.handshake_headers = [self.handshake_headers[i] for i in kept]
        self.handshake_paths = [self.handshake_paths[i] for i in kept]
        self._all = [self._all[i] for i in kept]

    def _frame_received(self, conn: MockConnection, frame: Frame) -> None:
        kind = _FRAME_KINDS.get(frame.opcode, "unknown")
        payload = bytes(frame.data)
        if kind in ("ping", "pong"):
            with self._cond:
                if kind == "ping":
                    conn.pings_received.append(payload)
                    self.pings_received.append(payload)
                else:
                    conn.pongs_received.append(payload)
                    self.pongs_received.append(payload)
                self._cond.notify_all()
        self.frame_received(conn, kind, payload)
        if kind == "close":
            # Let waiters re-check is_open-based predicates.
            with self._cond:
                self._cond.notify_all()

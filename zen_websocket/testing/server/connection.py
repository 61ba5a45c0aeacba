"""One client connection: :class:`MockConnection` and the ``websockets`` connection under it."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from websockets.frames import Frame
from websockets.sync.server import Server, ServerConnection

from .messages import Message, _check_close_code, encode_message
from .sockets import _GatedSocket
from .timers import Timer

if TYPE_CHECKING:
    from .mock_server import MockWebSocketServer

__all__ = ["MockConnection"]

logger = logging.getLogger(__name__)


@dataclass
class _Attempt:
    """One accepted TCP connection, from accept() to the end of its thread."""

    number: int
    sock: socket.socket
    fault: tuple[Any, ...] | None
    thread: threading.Thread | None = None
    ws: _WSConnection | None = None
    # Between an accepted upgrade request and the connection being listed as
    # open: the client may already have its 101 (see _ServerCore.connections).
    upgrading: bool = False


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

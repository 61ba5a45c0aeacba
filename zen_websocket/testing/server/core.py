"""The server's shared state, its lock, and the accepting of TCP connections.

:class:`_ServerCore` is the base of every part of
:class:`~zen_websocket.testing.server.MockWebSocketServer`: it holds the
configuration and everything recorded, the one condition that guards it, the
helper-thread spawner, and the accept path (listening socket, fault plan
item per TCP connection, one connection thread per accepted socket).
"""

from __future__ import annotations

import itertools
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server

from .connection import MockConnection, _Attempt, _local
from .messages import Handler, Message
from .sockets import _abort_raw, _Listener
from .timers import _Scheduler

if TYPE_CHECKING:
    from .._tls import TLSMaterial
    from .faults import _Rejection
    from .sending import StreamHandle

# Internal to the package: nothing here is public API.
__all__: list[str] = []

logger = logging.getLogger(__name__)


class _ServerCore:
    """State, lock and accept path shared by the parts of :class:`MockWebSocketServer`.

    Locking: ``_cond`` (a Condition over one lock) guards the recorded state
    (``received``, connections, counters, plans, handshake faults). It is
    never held while sending, closing or calling user code.
    ``_lifecycle_lock`` serializes changes of the listening socket (start,
    stop, refuse, restart).
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
        """Arguments: see :class:`MockWebSocketServer`."""
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

    # ------------------------------------------------------------------ address

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

    # ------------------------------------------------------------------ open connections, waiting

    @property
    def connections(self) -> list[MockConnection]:
        """Currently open connections (closing ones excluded), oldest first (a copy).

        A connection whose 101 answer is on its way is waited for (up to a
        second): the client may already be connected and expect what is sent
        next to reach it.
        """
        with self._cond:
            self._cond.wait_for(lambda: not any(a.upgrading for a in self._attempts.values()), timeout=1.0)
            return [c for c in self._open if c.is_open]

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

    # ------------------------------------------------------------------ helper threads

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

    # ------------------------------------------------------------------ accepting TCP

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

    def _listen_again(self) -> None:
        sock = socket.create_server((self.host, self.port))
        if self.ssl_context is not None:
            # Same wrapping as websockets' serve(): the TLS handshake happens in
            # the connection thread, under open_timeout.
            sock = self.ssl_context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        self._listener = _Listener(sock, self)
        self._listener.start()

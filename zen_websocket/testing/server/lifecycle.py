"""Starting and stopping the server: listening socket, threads, TLS material.

:meth:`_Lifecycle.stop` closes every connection and joins every thread the
server started (see the list in the package docstring).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any, TypeVar, cast

from websockets.sync.server import serve
from websockets.typing import Subprotocol

from .._tls import TLSMaterial
from .serving import _Serving
from .sockets import _abort_raw, _Listener
from .timers import _Scheduler

# Internal to the package: nothing here is public API.
__all__: list[str] = []

logger = logging.getLogger(__name__)

_ServerT = TypeVar("_ServerT", bound="_Lifecycle")


class _Lifecycle(_Serving):
    """Start, stop and context management of :class:`MockWebSocketServer`."""

    def __enter__(self: _ServerT) -> _ServerT:
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

    def start(self: _ServerT) -> _ServerT:
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

    def client_ssl_context(self) -> ssl.SSLContext:
        """A client ``SSLContext`` trusting this server's CA (verification on).

        Raises:
            RuntimeError: If the server is not started with ``tls=True``.
        """
        if self._tls_material is None:
            raise RuntimeError("client_ssl_context() needs MockWebSocketServer(tls=True), started")
        return self._tls_material.client_context()

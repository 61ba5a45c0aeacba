"""Each connection's life on the server: opening handshake, message loop, frames, close.

Runs in the connection threads (``mock-ws-conn-<id>``) and receive threads
(``mock-ws-recv-<id>``) that ``websockets`` calls back into, and holds the
extension points the exchange emulators override.
"""

from __future__ import annotations

import contextlib
import http
import logging
import socket
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection
from websockets.typing import Subprotocol

from .connection import MockConnection, _Attempt, _local, _WSConnection
from .core import _ServerCore
from .faults import _apply_fault, _Rejection, _take_handshake_fault
from .messages import Message

if TYPE_CHECKING:
    from .mock_server import MockWebSocketServer

# Internal to the package: nothing here is public API.
__all__: list[str] = []

logger = logging.getLogger(__name__)

_FRAME_KINDS = {
    Opcode.TEXT: "text",
    Opcode.BINARY: "binary",
    Opcode.CONT: "continuation",
    Opcode.PING: "ping",
    Opcode.PONG: "pong",
    Opcode.CLOSE: "close",
}


class _Serving(_ServerCore):
    """What :class:`MockWebSocketServer` does with each connection, and the hooks subclasses override."""

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

    # ------------------------------------------------------------------ websockets callbacks

    def _create_connection(self, sock: socket.socket, protocol: Any, server: Server, **kwargs: Any) -> _WSConnection:
        attempt: _Attempt = _local.attempt
        # Only ever called on a MockWebSocketServer, which this class is a part of.
        return _WSConnection(cast("MockWebSocketServer", self), attempt, sock, protocol, server, **kwargs)

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
        action, rejection, hang = _take_handshake_fault(self, attempt.fault)
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
        with self._cond:
            attempt.upgrading = True
        return None

    def _serve_connection(self, ws: ServerConnection) -> None:
        """Connection thread, after a successful opening handshake."""
        assert isinstance(ws, _WSConnection)
        conn = ws.mock
        conn.opened_at = time.monotonic()
        attempt: _Attempt = _local.attempt
        with self._cond:
            attempt.upgrading = False
            self._open.append(conn)
            self._all.append(conn)
            self._connection_count += 1
            self._generation += 1
            self.handshake_headers.append(dict(conn.request_headers))
            self.handshake_paths.append(conn.path)
            self._cond.notify_all()
        try:
            if attempt.fault is not None:
                _apply_fault(conn, attempt.fault)
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

"""The TCP edge: the accept thread on the listening socket, and a connection socket that can stall.

Everything here is plain sockets and threads; the WebSocket protocol is
``websockets``' job (see ``connection.py``).
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import struct
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .core import _ServerCore

# Internal to the package: nothing here is public API.
__all__: list[str] = []

logger = logging.getLogger(__name__)


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


class _Listener:
    """A listening socket and the thread accepting on it."""

    def __init__(self, sock: socket.socket, owner: _ServerCore) -> None:
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

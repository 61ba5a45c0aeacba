"""The socket edge: handshake through websocket-client, frames through our reader.

websocket-client does what it does well: the HTTP upgrade (headers,
subprotocols, proxies, TLS, redirects). Frames are ours, for reasons measured
on this machine (see WEBSOCKET-CLIENT-NOTES in the design docs and ``make bench``):

- websocket-client's reader asks the socket for exactly the bytes it still
  needs (2 for a header, then the payload), two or three ``recv`` system
  calls per small frame. :class:`Transport` reads up to 256 KiB at a time and
  parses every frame in that buffer, so a burst of small frames costs one
  system call.
- Its UTF-8 check is pure Python (about 0.28 s per MiB); a strict
  ``bytes.decode`` runs in C. Fragmented text is checked with an incremental
  decoder so invalid UTF-8 fails as soon as a fragment proves it.
- It has no message-size limit and answers every close with 1000. We check
  the size from the frame header before reading the payload and echo the
  peer's close code.
- ``ABNF.create_frame(...).format()`` validates and builds an object per
  frame (about 4.7 µs for 200 bytes); :func:`client_frame` does the same
  masking (``os.urandom`` key, XOR through ``int.from_bytes``, as
  websocket-client does) in about 1.5 µs, on every send.

Threading contract: exactly one thread (the client's receive thread) calls
:meth:`Transport.recv`; any thread may call the ``send_*`` methods, which are
serialised by ``_send_lock``; :meth:`abort` may be called from any thread and
wakes a blocked reader or writer (``shutdown`` does that on Linux).
"""

from __future__ import annotations

import codecs
import functools
import logging
import os
import socket
import ssl
import struct
import threading
from typing import Any
from urllib.parse import urlsplit

import websocket

from .config import ClientConfig
from .errors import ConnectError, ConnectionClosed, MessageTooLarge, ProtocolError, connect_reason

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "Transport",
    "valid_close_code",
]

logger = logging.getLogger(__name__)

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
_DATA_OPCODES = (OP_TEXT, OP_BINARY)
_CONTROL_OPCODES = (OP_CLOSE, OP_PING, OP_PONG)

# One read per burst: large enough that a backlog of small frames is parsed
# from memory, small enough not to matter per connection.
READ_CHUNK = 256 * 1024

_utf8_decoder = codecs.getincrementaldecoder("utf-8")
_pack_header16 = struct.Struct("!BBH").pack
_pack_header64 = struct.Struct("!BBQ").pack


def client_frame(opcode: int, payload: bytes, urandom: Any = os.urandom) -> bytes:
    """One final client frame: header, 4-byte masking key, masked payload (RFC 6455 5.2-5.3).

    The key comes from ``os.urandom`` (the RFC wants an unpredictable one);
    the XOR runs over the whole payload at once as two big integers.
    """
    n = len(payload)
    mask = urandom(4)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = _pack_header16(0x80 | opcode, 0xFE, n)
    else:
        header = _pack_header64(0x80 | opcode, 0xFF, n)
    if not n:
        return header + mask
    key = (mask * ((n >> 2) + 1))[:n]
    masked = (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
    return header + mask + masked


def valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame (RFC 6455 7.4, IANA registry).

    1012-1014 are registered (service restart, try again later, bad gateway)
    and exchanges send them, so they are accepted.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class _Eof(Exception):
    """The peer closed TCP (read returned b'')."""


class Transport:
    """One open WebSocket connection.

    Build it with :meth:`open`; read with :meth:`recv` from one thread; send
    from any thread.
    """

    def __init__(self, ws: websocket.WebSocket, max_message_size: int | None, debug: bool = False) -> None:
        self._ws = ws
        assert ws.sock is not None, "Transport needs a connected WebSocket"
        self.sock: socket.socket = ws.sock
        self.max_message_size = max_message_size
        self._debug = debug
        self.subprotocol: str | None = ws.getsubprotocol()
        self.response_headers: dict[str, str] = dict(ws.getheaders() or {})
        self._send_lock = threading.Lock()  # guards writes to the socket (whole frames)
        self._buf = b""
        self._pos = 0
        self.bytes_received = 0  # written by the reader only
        self.bytes_sent = 0  # written under _send_lock
        self.close_sent = False
        # The socket stays blocking after the handshake: the reader is woken
        # by abort() (shutdown), never by polling with a timeout.
        self.sock.settimeout(None)

    # -- opening --------------------------------------------------------

    @classmethod
    def open(cls, config: ClientConfig, *, on_socket: Any = None) -> Transport:
        """Connect and upgrade, within ``config.timeout`` per phase.

        Args:
            config: the client's options.
            on_socket: called with the ``websocket.WebSocket`` before the
                handshake starts, so that ``close()`` can abort it.

        Raises:
            ConnectError: with ``reason`` and ``status_code``, chained to the
                underlying exception.
        """
        ws = websocket.WebSocket(
            sslopt={"context": config.ssl_context or _default_ssl_context()} if config.url.startswith("wss:") else {},
            skip_utf8_validation=True,  # we decode strictly in C ourselves
            enable_multithread=True,
        )
        if on_socket is not None:
            on_socket(ws)
        options: dict[str, Any] = {
            "timeout": config.timeout,
            "header": dict(config.headers),
            "suppress_origin": True,
        }
        if config.subprotocols:
            options["subprotocols"] = list(config.subprotocols)
        if config.proxy:
            proxy = urlsplit(config.proxy)
            options["http_proxy_host"] = proxy.hostname
            options["http_proxy_port"] = proxy.port or (1080 if proxy.scheme.startswith("socks") else 8080)
            options["proxy_type"] = proxy.scheme
            if proxy.username:
                options["http_proxy_auth"] = (proxy.username, proxy.password or "")
        else:
            # Ignore http_proxy/https_proxy from the environment: a trading
            # connection silently routed through a proxy is a latency (and
            # trust) surprise. Pass proxy= to use one.
            options["http_no_proxy"] = ["*"]
        try:
            ws.connect(config.url, **options)
        except Exception as exc:
            try:
                ws.shutdown()
            except Exception:
                pass
            raise _connect_error(exc) from exc
        return cls(ws, config.max_message_size, config.debug)

    # -- reading (receive thread only) ----------------------------------

    def _fill(self) -> None:
        data = self.sock.recv(READ_CHUNK)
        if not data:
            raise _Eof()
        if self._pos < len(self._buf):
            self._buf = self._buf[self._pos :] + data
        else:
            self._buf = data
        self._pos = 0

    def _read_payload(self, length: int) -> bytes:
        """The next ``length`` bytes, reading straight into one buffer when large."""
        avail = len(self._buf) - self._pos
        if avail >= length:
            end = self._pos + length
            payload = self._buf[self._pos : end]
            self._pos = end
            return payload
        out = bytearray(length)
        view = memoryview(out)
        out[:avail] = self._buf[self._pos :]
        self._buf, self._pos = b"", 0
        got = avail
        while got < length:
            n = self.sock.recv_into(view[got:], min(length - got, 4 * 1024 * 1024))
            if not n:
                raise _Eof()
            got += n
        return bytes(out)

    def _frame(self) -> tuple[bool, int, bytes]:
        """Read one frame: (fin, opcode, payload). Size-checked before the payload."""
        while len(self._buf) - self._pos < 2:
            self._fill()
        buf, pos = self._buf, self._pos
        b0 = buf[pos]
        b1 = buf[pos + 1]
        length = b1 & 0x7F
        header = 2
        if length >= 126:
            header = 4 if length == 126 else 10
            while len(self._buf) - self._pos < header:
                self._fill()
            buf, pos = self._buf, self._pos
            length = int.from_bytes(buf[pos + 2 : pos + header], "big")
            if length >> 63:
                raise ProtocolError("64-bit payload length with the most significant bit set")
        opcode = b0 & 0x0F
        fin = bool(b0 & 0x80)
        if b0 & 0x70:
            raise ProtocolError("reserved bits set without a negotiated extension")
        if b1 & 0x80:
            raise ProtocolError("the server sent a masked frame")
        if opcode >= 8:
            if opcode not in _CONTROL_OPCODES:
                raise ProtocolError(f"unknown control opcode {opcode:#x}")
            if not fin or length > 125:
                raise ProtocolError("control frames must be final and at most 125 bytes")
        elif opcode not in (OP_CONT, OP_TEXT, OP_BINARY):
            raise ProtocolError(f"unknown data opcode {opcode:#x}")
        self._pos = pos + header
        if opcode < 8 and self.max_message_size is not None:
            # Checked from the header, before a byte of the payload is read.
            total = length + (self._fragments_size if opcode == OP_CONT and self._fragments is not None else 0)
            if total > self.max_message_size:
                self._fragments = None
                raise MessageTooLarge(total, self.max_message_size)
        self.bytes_received += header + length
        return fin, opcode, self._read_payload(length)

    _fragments: list[bytes] | None = None
    _fragments_opcode = OP_TEXT
    _fragments_size = 0
    _decoder: Any = None

    def recv(self) -> tuple[int, Any]:
        """Read the next message or control frame.

        Returns:
            ``(OP_TEXT, str)``, ``(OP_BINARY, bytes)``, ``(OP_PING, bytes)``,
            ``(OP_PONG, bytes)`` or ``(OP_CLOSE, (code, reason))``; code is
            1005 when the close frame carried none.

        Raises:
            ProtocolError: the peer broke RFC 6455 (``close_code`` says how to close).
            MessageTooLarge: a message over ``max_message_size``.
            ConnectionClosed: TCP closed without a close frame (code None).
            OSError: the socket failed.
        """
        try:
            while True:
                fin, opcode, payload = self._frame()
                if opcode == OP_TEXT and fin and self._fragments is None:
                    try:
                        return OP_TEXT, payload.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        raise ProtocolError("invalid UTF-8 in a text message", 1007) from exc
                if opcode >= 8:
                    if opcode == OP_CLOSE:
                        return OP_CLOSE, _parse_close(payload)
                    return opcode, payload
                message = self._assemble(fin, opcode, payload)
                if message is not None:
                    return message
        except _Eof:
            raise ConnectionClosed(None, "connection dropped without a close frame") from None

    def _assemble(self, fin: bool, opcode: int, payload: bytes) -> tuple[int, Any] | None:
        if opcode == OP_CONT:
            if self._fragments is None:
                raise ProtocolError("continuation frame without a message to continue")
        elif self._fragments is not None:
            raise ProtocolError("new data frame while a fragmented message is in progress")
        else:
            if fin:  # an unfragmented binary frame
                return opcode, payload
            self._fragments = []
            self._fragments_opcode = opcode
            self._fragments_size = 0
            self._decoder = _utf8_decoder() if opcode == OP_TEXT else None
        self._fragments_size += len(payload)
        limit = self.max_message_size
        if limit is not None and self._fragments_size > limit:
            size = self._fragments_size
            self._fragments = None
            raise MessageTooLarge(size, limit)
        if self._decoder is not None:
            # Fail fast: a fragment that proves the text invalid ends it now.
            try:
                self._fragments.append(self._decoder.decode(payload, fin))
            except UnicodeDecodeError as exc:
                raise ProtocolError("invalid UTF-8 in a text message", 1007) from exc
        else:
            self._fragments.append(payload)
        if not fin:
            return None
        parts, kind = self._fragments, self._fragments_opcode
        self._fragments = None
        self._decoder = None
        if kind == OP_TEXT:
            return OP_TEXT, "".join(parts)  # type: ignore[arg-type]
        return OP_BINARY, b"".join(parts)

    # -- sending (any thread) -------------------------------------------

    def send_frame(self, opcode: int, payload: bytes) -> int:
        """Mask and send one frame; returns its size.

        Raises:
            OSError: the socket failed, or (``BrokenPipeError``) our close
                frame was already sent.
        """
        frame = client_frame(opcode, payload)
        with self._send_lock:
            if self.close_sent:
                # RFC 6455 5.5.1: nothing may follow our close frame.
                raise BrokenPipeError("the close frame was already sent")
            self.sock.sendall(frame)
            self.bytes_sent += len(frame)
        return len(frame)

    def send_text(self, text: str) -> int:
        """Send a text message."""
        return self.send_frame(OP_TEXT, text.encode("utf-8"))

    def send_binary(self, data: bytes) -> int:
        """Send a binary message."""
        return self.send_frame(OP_BINARY, data)

    def ping(self, payload: bytes = b"") -> None:
        """Send a ping frame."""
        self.send_frame(OP_PING, payload)

    def pong(self, payload: bytes = b"") -> None:
        """Send a pong frame (the answer to the peer's ping)."""
        self.send_frame(OP_PONG, payload)

    def send_close(self, code: int = 1000, reason: str = "", timeout: float | None = None) -> bool:
        """Send a close frame once; bounded by ``timeout`` when given.

        Returns False when it could not be sent in time (a writer is stuck
        on a dead peer) or the socket is gone.
        """
        if self.close_sent:
            return True
        payload = b"" if code == 1005 else struct.pack("!H", code) + reason.encode("utf-8")[:123]
        frame = client_frame(OP_CLOSE, payload)
        if not self._send_lock.acquire(timeout=-1 if timeout is None else timeout):
            return False
        try:
            if self.close_sent:
                return True
            if timeout is not None:
                # Bounds this write; the reader is already in recv() on a
                # blocking fd and is woken later by abort().
                self.sock.settimeout(timeout)
            self.sock.sendall(frame)
            self.bytes_sent += len(frame)
            self.close_sent = True
            return True
        except OSError:
            return False
        finally:
            self._send_lock.release()

    def abort(self) -> None:
        """Shut the socket down (waking any blocked reader or writer) and close it."""
        sock = self.sock
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            sock.close()
        except OSError:
            pass


@functools.lru_cache(maxsize=1)
def _default_ssl_context() -> ssl.SSLContext:
    """One verifying context for every ``wss://`` connection without its own.

    Loading the system CA store costs about 800 KiB and 27 ms; an
    ``SSLContext`` is safe to share between threads and connections.
    """
    return ssl.create_default_context()


def _parse_close(payload: bytes) -> tuple[int, str]:
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise ProtocolError("close frame with a one-byte payload")
    code = int.from_bytes(payload[:2], "big")
    if not valid_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("invalid UTF-8 in a close reason", 1007) from exc
    return code, reason


def _connect_error(exc: BaseException) -> ConnectError:
    reason = connect_reason(exc)
    status = getattr(exc, "status_code", None)
    if not isinstance(status, int):
        status = None
    if status is not None:
        message = f"handshake rejected with HTTP {status}"
    else:
        message = f"connect failed ({reason}): {type(exc).__name__}: {exc}"
    return ConnectError(message, reason=reason, status_code=status)

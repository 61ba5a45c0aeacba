"""RFC 6455 compliance of the frame reader and the closing handshake.

Each test runs a raw TCP server that speaks the opening handshake by hand,
sends crafted frames and asserts the close code the client actually sent.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import threading

import pytest

import zen_websocket as zw
from tests.timeunit import ms

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = None,
    length: int | None = None,
) -> bytes:
    """A server frame; ``length`` overrides the header length (payload not sent with it)."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask else 0
    if n < 126:
        header = struct.pack("!BB", b0, mask_bit | n)
    elif n < 65536:
        header = struct.pack("!BBH", b0, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", b0, mask_bit | 127, n)
    if mask:
        header += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + payload


def close_frame(code: int, reason: bytes = b"") -> bytes:
    return frame(OP_CLOSE, struct.pack("!H", code) + reason)


class RawConn:
    """The server side of one accepted connection (client frames are unmasked)."""

    def __init__(self, sock: socket.socket, buf: bytes) -> None:
        self.sock = sock
        self.buf = bytearray(buf)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("client closed TCP")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_frame(self, timeout: float = 1.0) -> tuple[bool, int, bytes]:
        self.sock.settimeout(timeout)
        b0, b1 = self._read_exact(2)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self._read_exact(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", self._read_exact(8))
        assert b1 & 0x80, "client frames must be masked"
        mask = self._read_exact(4)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read_exact(n)))
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def read_close(self, timeout: float = 1.0) -> int | None:
        """The code of the client's close frame (None for an empty one); fails on any other frame."""
        fin, opcode, payload = self.read_frame(timeout)
        assert (fin, opcode) == (True, OP_CLOSE), f"expected a close frame, got opcode {opcode:#x}: {payload!r}"
        return struct.unpack("!H", payload[:2])[0] if payload else None

    def client_closed_tcp(self, timeout: float) -> bool:
        """True if the client closed TCP within ``timeout`` (and sent nothing more)."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return False
        assert data == b"", f"unexpected bytes after the close frame: {data!r}"
        return True

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class RawServer:
    """Accepts connections on loopback and completes the opening handshake by hand."""

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.conns: list[RawConn] = []
        self._accepted = threading.Event()
        self._thread = threading.Thread(target=self._accept_one, name="raw-server-accept", daemon=True)
        self._thread.start()

    def _accept_one(self) -> None:
        self.listener.settimeout(2.0)
        try:
            sock, _ = self.listener.accept()
        except OSError:
            return
        buf = b""
        sock.settimeout(2.0)
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                sock.close()
                return
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        key = b""
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        sock.sendall(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        self.conns.append(RawConn(sock, rest))
        self._accepted.set()

    def conn(self) -> RawConn:
        assert self._accepted.wait(2.0), "no client connected"
        return self.conns[0]

    def extra_connection_within(self, timeout: float) -> bool:
        """Whether another client connects (a reconnect) within ``timeout``."""
        self.listener.settimeout(timeout)
        try:
            sock, _ = self.listener.accept()
        except TimeoutError:
            return False
        sock.close()
        return True

    def close(self) -> None:
        self._thread.join(2.0)
        for conn in self.conns:
            conn.close()
        self.listener.close()


class Observed:
    """What the client reported through its callbacks."""

    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.closed = threading.Event()
        self.close_args: tuple[int | None, str] | None = None

    def on_error(self, client: zw.Client, exc: BaseException) -> None:
        self.errors.append(exc)

    def on_close(self, client: zw.Client, code: int | None, reason: str) -> None:
        self.close_args = (code, reason)
        self.closed.set()


@pytest.fixture
def raw_server():
    server = RawServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def connect(raw_server):
    """connect(**options) -> (client, server conn, observed); the client is always closed."""
    clients: list[zw.Client] = []

    def _connect(**options: object) -> tuple[zw.Client, RawConn, Observed]:
        seen = Observed()
        defaults: dict[str, object] = {
            "heartbeat_config": None,
            "retry_count": 0,
            "reconnect_on_error": False,
            "close_timeout": ms(500),
            "on_error": seen.on_error,
            "on_close": seen.on_close,
        }
        defaults.update(options)
        client = zw.connect(raw_server.url, **defaults)
        clients.append(client)
        return client, raw_server.conn(), seen

    yield _connect
    for client in clients:
        client.close(timeout=ms(500))


def _failed_with(conn: RawConn, seen: Observed, client: zw.Client, code: int, error: type[BaseException]) -> None:
    """The client sent close ``code``, reported ``error`` and ended for good once TCP closed."""
    assert conn.read_close() == code
    conn.close()  # the server closes TCP; the client stops waiting for it
    assert seen.closed.wait(1.0)
    assert seen.errors and isinstance(seen.errors[0], error), seen.errors
    assert getattr(seen.errors[0], "close_code", None) == code
    assert client.get_state() == "disconnected"


def _server_closes(conn: RawConn) -> None:
    """A clean close started by the server: close frame, echo, TCP close."""
    conn.send(close_frame(1000))
    assert conn.read_close() == 1000
    conn.close()


def test_masked_server_frame_fails_with_1002(connect):
    client, conn, seen = connect()
    conn.send(frame(OP_TEXT, b"hello", mask=b"\x01\x02\x03\x04"))
    _failed_with(conn, seen, client, 1002, zw.ProtocolError)


@pytest.mark.parametrize("rsv", [1, 2, 4])
def test_reserved_bits_fail_with_1002(connect, rsv):
    client, conn, seen = connect()
    conn.send(frame(OP_TEXT, b"hello", rsv=rsv))
    _failed_with(conn, seen, client, 1002, zw.ProtocolError)


@pytest.mark.parametrize("opcode", [0x3, 0x7, 0xB, 0xF])
def test_reserved_opcodes_fail_with_1002(connect, opcode):
    client, conn, seen = connect()
    conn.send(frame(opcode, b"x"))
    _failed_with(conn, seen, client, 1002, zw.ProtocolError)


def test_control_frame_over_125_bytes_fails_with_1002(connect):
    client, conn, seen = connect()
    conn.send(frame(OP_PING, b"x" * 126))
    _failed_with(conn, seen, client, 1002, zw.ProtocolError)


def test_fragmented_control_frame_fails_with_1002(connect):
    client, conn, seen = connect()
    conn.send(frame(OP_PING, b"x", fin=False))
    _failed_with(conn, seen, client, 1002, zw.ProtocolError)


def test_invalid_utf8_text_fails_with_1007(connect):
    client, conn, seen = connect()
    conn.send(frame(OP_TEXT, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"))
    _failed_with(conn, seen, client, 1007, zw.ProtocolError)
    with pytest.raises(zw.ConnectionClosed):
        client.recv(ms(50))  # nothing was delivered


def test_invalid_utf8_in_first_fragment_fails_before_the_final_fragment(connect):
    client, conn, seen = connect()
    conn.send(frame(OP_TEXT, b"\xce\xba\xf4\x90\x80\x80", fin=False))  # > U+10FFFF: invalid at once
    # Nothing else is sent: the close must come from the first fragment alone.
    _failed_with(conn, seen, client, 1007, zw.ProtocolError)


def test_truncated_utf8_at_end_of_message_fails_with_1007(connect):
    client, conn, seen = connect()
    conn.send(frame(OP_TEXT, b"\xce\xba\xe1", fin=False) + frame(OP_CONT, b"", fin=True))
    _failed_with(conn, seen, client, 1007, zw.ProtocolError)


def test_message_over_max_message_size_fails_from_the_header(connect, raw_server):
    client, conn, seen = connect(max_message_size=1024, reconnect_on_error=True, retry_count=2, retry_delay=ms(10))
    # Only the header: the limit is enforced before a byte of payload arrives.
    conn.send(frame(OP_BINARY, length=1_000_000))
    _failed_with(conn, seen, client, 1009, zw.MessageTooLarge)
    assert seen.errors[0].size == 1_000_000
    assert not raw_server.extra_connection_within(ms(100)), "a message over the limit must not reconnect"


def test_fragmented_message_over_max_message_size_fails_with_1009(connect):
    client, conn, seen = connect(max_message_size=100)
    conn.send(frame(OP_TEXT, b"a" * 60, fin=False))
    conn.send(frame(OP_CONT, b"b" * 60, fin=True))
    _failed_with(conn, seen, client, 1009, zw.MessageTooLarge)


def test_huge_64bit_length_fails_with_1002(connect):
    client, conn, seen = connect(max_message_size=None)
    conn.send(struct.pack("!BBQ", 0x82, 127, 1 << 63))
    _failed_with(conn, seen, client, 1002, zw.ProtocolError)


def test_ping_is_answered_with_the_same_payload(connect):
    _client, conn, _seen = connect()
    payload = bytes(range(125))
    conn.send(frame(OP_PING, payload))
    assert conn.read_frame() == (True, OP_PONG, payload)
    conn.send(frame(OP_PING, b""))
    assert conn.read_frame() == (True, OP_PONG, b"")
    _server_closes(conn)


def test_ping_interleaved_in_a_fragmented_message(connect):
    client, conn, _seen = connect()
    conn.send(frame(OP_TEXT, b"Hello, ", fin=False))
    conn.send(frame(OP_PING, b"mid"))
    assert conn.read_frame() == (True, OP_PONG, b"mid")  # answered before the message ends
    conn.send(frame(OP_CONT, "wörld".encode(), fin=True))
    assert client.recv(1.0) == "Hello, wörld"
    _server_closes(conn)


def test_server_close_1001_is_echoed(connect):
    _client, conn, seen = connect()
    conn.send(close_frame(1001, b"going away"))
    assert conn.read_close() == 1001
    conn.close()
    assert seen.closed.wait(1.0)
    assert seen.close_args is not None and seen.close_args[0] == 1001
    assert seen.errors == []


def test_server_close_without_code_is_echoed_empty(connect):
    _client, conn, seen = connect()
    conn.send(frame(OP_CLOSE))
    assert conn.read_close() is None
    conn.close()
    assert seen.closed.wait(1.0)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_invalid_close_code_fails_with_1002(connect, code):
    client, conn, seen = connect()
    conn.send(close_frame(code))
    _failed_with(conn, seen, client, 1002, zw.ProtocolError)


def test_one_byte_close_payload_fails_with_1002(connect):
    client, conn, seen = connect()
    conn.send(frame(OP_CLOSE, b"\x03"))
    _failed_with(conn, seen, client, 1002, zw.ProtocolError)


def test_invalid_utf8_close_reason_fails_with_1007(connect):
    client, conn, seen = connect()
    conn.send(close_frame(1000, b"\xff\xfe"))
    _failed_with(conn, seen, client, 1007, zw.ProtocolError)


def test_nothing_is_sent_after_the_close_echo_and_the_server_closes_tcp_first(connect):
    client, conn, seen = connect()
    conn.send(close_frame(1000))
    assert conn.read_close() == 1000
    # The client waits for the server's TCP close (bounded by close_timeout)...
    assert not conn.client_closed_tcp(ms(100))
    # ...and refuses to send meanwhile: nothing may follow its close frame.
    with pytest.raises(zw.NotConnectedError):
        client.send_message("too late")
    conn.close()
    assert seen.closed.wait(1.0)


def test_client_close_waits_for_the_servers_tcp_close(connect):
    client, conn, seen = connect(close_timeout=ms(1500))
    closer = threading.Thread(target=client.close, name="test-closer")
    closer.start()
    try:
        assert conn.read_close() == 1000
        conn.send(close_frame(1000))
        assert not conn.client_closed_tcp(ms(100)), "the client closed TCP before the server"
        assert closer.is_alive()
        conn.close()
    finally:
        closer.join(2.0)
    assert not closer.is_alive()
    assert seen.closed.wait(1.0)


def test_client_close_is_bounded_when_the_server_keeps_tcp_open(connect):
    client, conn, _seen = connect(close_timeout=ms(300))
    closer = threading.Thread(target=client.close, name="test-closer")
    closer.start()
    assert conn.read_close() == 1000
    conn.send(close_frame(1000))
    # The client gives up waiting and closes TCP itself.
    assert conn.client_closed_tcp(1.0)
    closer.join(1.0)
    assert not closer.is_alive()


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_001])
def test_client_frames_are_masked_and_decode_to_the_payload(size):
    """client_frame agrees with websocket-client's own frame parser for every length form."""
    from websocket import ABNF

    from zen_websocket.protocol import client_frame

    payload = os.urandom(size)
    frame = client_frame(0x2, payload)
    assert frame[0] == 0x82
    assert frame[1] & 0x80  # masked
    length = frame[1] & 0x7F
    offset = 2 if length < 126 else (4 if length == 126 else 10)
    declared = length if length < 126 else int.from_bytes(frame[2:offset], "big")
    assert declared == size
    mask = frame[offset : offset + 4]
    assert ABNF.mask(mask, frame[offset + 4 :]) == payload
    assert len({client_frame(0x1, b"abcd")[2:6] for _ in range(8)}) > 1  # a fresh key per frame

"""A fast WebSocket server for benchmarks: frames are pre-built, sent in bulk.

Runs as its own process (``python scripts/bench_server.py PORT``), so the
client under test has the interpreter to itself. Commands (text messages):

- ``blast N SIZE``: send N text frames of SIZE bytes, then the text ``done``.
- anything else is echoed back (text or binary).

Only what a benchmark needs: no fragmentation, no extensions, one thread per
connection. The handshake is written by hand to keep the server lean.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import struct
import sys
import threading

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return header + payload


def message(seq: int, size: int) -> bytes:
    head = b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.BTC-PERPETUAL.100ms","data":{"seq":%d,"pad":"' % seq
    tail = b'"}}}'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


def read_exact(sock: socket.socket, buf: bytearray, n: int) -> bytes:
    while len(buf) < n:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    out = bytes(buf[:n])
    del buf[:n]
    return out


def serve_connection(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = bytearray()
    try:
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                return
            buf += chunk
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        buf = bytearray(rest)
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
        while True:
            b0, b1 = read_exact(sock, buf, 2)
            opcode, length = b0 & 0x0F, b1 & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", read_exact(sock, buf, 2))
            elif length == 127:
                (length,) = struct.unpack("!Q", read_exact(sock, buf, 8))
            mask = read_exact(sock, buf, 4) if b1 & 0x80 else b"\0\0\0\0"
            data = read_exact(sock, buf, length)
            if b1 & 0x80 and length:
                key4 = (mask * (length // 4 + 1))[:length]
                data = (int.from_bytes(data, "big") ^ int.from_bytes(key4, "big")).to_bytes(length, "big")
            if opcode == 0x8:
                sock.sendall(frame(0x8, data[:2]))
                return
            if opcode == 0x9:
                sock.sendall(frame(0xA, data))
                continue
            if opcode == 0xA:
                continue
            if opcode == 0x1 and data.startswith(b"blast "):
                _, n, size = data.split()
                blob = b"".join(frame(0x1, message(i, int(size))) for i in range(int(n)))
                sock.sendall(blob + frame(0x1, b"done"))
                continue
            sock.sendall(frame(opcode, data))
    except (ConnectionError, OSError):
        pass
    finally:
        sock.close()


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    listener = socket.create_server(("127.0.0.1", port), reuse_port=False, backlog=512)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve_connection, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()

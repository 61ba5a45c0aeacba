"""A fast WebSocket server for benchmarks: frames are pre-built, sent in bulk.

Runs as its own process (``python scripts/bench_server.py PORT``), so the
client under test has the interpreter to itself. Commands (text messages):

- ``blast N SIZE [REPEAT]``: send N text frames of SIZE bytes (REPEAT
  times over, default once), then the text ``done``.
- ``notify N SIZE [REPEAT]``: the same with Deribit-style JSON-RPC
  notifications (``{"jsonrpc":"2.0","method":"subscription","params":{...}}``,
  no ``id``) of SIZE bytes.
- a JSON-RPC request (a text JSON object with ``"id"`` and ``"method"``) is
  answered ``{"jsonrpc":"2.0","id":<id>,"result":<params or "ok">}``,
  except method ``bench/never``, which is never answered (so a client keeps
  a request in flight for as long as it likes).
- anything else is echoed back (text or binary).

Bursts are cached by (command, N, SIZE): a repeated burst is sent without
being rebuilt, so repeated measurements only time the client. REPEAT sends
the one cached burst again, so a long run of large messages needs memory for
N of them only.

Only what a benchmark needs: no fragmentation, no extensions, one thread per
connection. The handshake is written by hand to keep the server lean.
"""

from __future__ import annotations

import base64
import hashlib
import json
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
    head = (
        b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.BTC-PERPETUAL.100ms","data":{"seq":%d,"pad":"'
        % seq
    )
    tail = b'"}}}'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


def notification(seq: int, size: int) -> bytes:
    head = (
        b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"deribit_price_index.btc_usd",'
        b'"data":{"index_name":"btc_usd","price":%d.%02d,"timestamp":%d,"seq":%d,"pad":"'
        % (97_000 + seq % 1000, seq % 100, 1_700_000_000_000 + seq, seq)
    )
    tail = b'"}}}'
    return head + b"x" * max(0, size - len(head) - len(tail)) + tail


BUILDERS = {b"blast": message, b"notify": notification}
_bursts: dict[tuple[bytes, int, int], bytes] = {}
_bursts_lock = threading.Lock()


DONE = frame(0x1, b"done")


def burst(kind: bytes, n: int, size: int) -> bytes:
    """N pre-built frames; cached so a repeat costs one sendall."""
    key = (kind, n, size)
    with _bursts_lock:
        blob = _bursts.get(key)
        if blob is None:
            build = BUILDERS[kind]
            blob = b"".join(frame(0x1, build(i, size)) for i in range(1, n + 1))
            _bursts.clear()  # keep one burst: 200,000 x 200 bytes is 40 MB
            _bursts[key] = blob
    return blob


def rpc_response(data: bytes) -> bytes | None:
    """The response frame to a JSON-RPC request, b"" to stay silent, None if not a request."""
    try:
        request = json.loads(data)
    except ValueError:
        return None
    if not isinstance(request, dict) or "id" not in request or "method" not in request:
        return None
    if request["method"] == "bench/never":
        return b""
    result = request.get("params", "ok")
    body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result}, separators=(",", ":"))
    return frame(0x1, body.encode())


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
            if opcode == 0x1 and data[:1] == b"{" and b'"method"' in data:
                response = rpc_response(data)
                if response is not None:
                    if response:
                        sock.sendall(response)
                    continue
            if opcode == 0x1 and (data.startswith(b"blast ") or data.startswith(b"notify ")):
                kind, n, size, *repeat = data.split()
                blob = burst(kind, int(n), int(size))
                for _ in range(int(repeat[0]) if repeat else 1):
                    sock.sendall(blob)
                sock.sendall(DONE)
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

"""Direct echo: connect, send text, binary and JSON, read the echoes, close.

The smallest complete program: one client, one connection, blocking calls.
A local echo server (``MockWebSocketServer(echo=True)``) stands in for a
real one, so this runs offline::

    python examples/echo.py

Against a real server only the URL changes (``zw.connect("wss://...")``).
"""

from __future__ import annotations

import zen_websocket as zw
from zen_websocket.testing import MockWebSocketServer


def main() -> int:
    with MockWebSocketServer(echo=True) as server:  # ws://127.0.0.1:<free port>
        with zw.connect(server.url) as client:  # closes the connection on leaving the block
            print(f"connected to {server.url}: state {client.get_state()}")

            client.send_message("hello")  # str -> a text frame
            print("text echo:  ", client.recv(timeout=5))

            client.send_message(b"\x00\x01\x02")  # bytes -> a binary frame
            print("binary echo:", client.recv(timeout=5))

            client.send_message({"op": "ping", "n": 1})  # dict/list -> JSON text
            print("JSON echo:  ", client.recv_json(timeout=5))

            metrics = client.get_state_metrics()
            print(f"sent {metrics['messages_sent']}, received {metrics['messages_received']} messages")
        # Leaving the with-block sent a close frame and joined the client's threads.
        print(f"closed: code {client.close_code}, reason {client.close_reason!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The public face: :class:`MockWebSocketServer`, one part per concern."""

from __future__ import annotations

from .faults import _Faults
from .lifecycle import _Lifecycle
from .recording import _Recording
from .replay import _Replay
from .sending import _Sending

__all__ = ["MockWebSocketServer"]


class MockWebSocketServer(_Replay, _Recording, _Faults, _Sending, _Lifecycle):
    """A WebSocket server on loopback for tests, with fault injection.

    Start it with ``with MockWebSocketServer() as server:`` (or
    :meth:`start` / :meth:`stop`) and point a client at :attr:`url`.

    Example::

        import re
        from zen_websocket.testing import MockWebSocketServer

        def handler(conn, message):
            if message == "ping":
                return "pong"  # a return value is sent back as the reply

        with MockWebSocketServer(handler=handler) as server:
            ...  # a client connects to server.url and sends {"op": "subscribe", "args": ["x"]}
            server.assert_message_sent({"op": "subscribe"})  # partial JSON match
            server.assert_message_sent(re.compile(r'"args"'))
            server.simulate_disconnect(1012, "restart")

    Fault injection: :meth:`simulate_disconnect` (close handshake),
    :meth:`drop_connections` (no close frame), :meth:`stall` (half-open
    peer), :meth:`refuse_connections` (ECONNREFUSED), :meth:`reject_handshake`
    (HTTP status), :meth:`hang_handshake`, :meth:`reset_during_handshake`,
    :meth:`restart`, and per-connection :meth:`plan`.

    Subclasses (the exchange emulators) override the extension points
    :meth:`connection_opened`, :meth:`message_received`,
    :meth:`connection_closed`, :meth:`frame_received` and
    :meth:`check_handshake`.

    Args:
        host: Interface to listen on (loopback only is sensible).
        port: Port; 0 picks a free one (see :attr:`port`).
        tls: Serve ``wss://`` with a throwaway CA (needs ``trustme``); see
            :meth:`client_ssl_context` and :attr:`ca_pem_path`.
        handler: ``handler(conn, message)`` called for each received message
            (after it is recorded) in the connection's thread. A non-``None``
            return value (str, bytes, dict, list) is sent back.
        on_connect: ``on_connect(conn)`` called once per connection after the
            opening handshake, before any message is read.
        subprotocols: Subprotocols the server supports, by preference. A
            client offering none of them still connects, without subprotocol.
        echo: Send every received message back (after ``handler``, if the
            handler returned nothing).
        max_size: Largest incoming message in bytes; ``None``: no limit.
        compression: ``"deflate"`` to negotiate permessage-deflate; off by default.
        open_timeout: Bound on the TLS and opening handshakes, in seconds.
        close_timeout: Bound on a closing handshake the server starts, in seconds.
        stop_timeout: Bound on :meth:`stop` before sockets are force-closed.
        history: Closed connections to remember in :attr:`all_connections`
            (with their handshake records); ``None`` remembers every one.
            Long soak runs bound it so the server's memory stays flat.
        replay: Path of a ``record_to`` recording whose incoming frames are
            sent, in order, to every client that connects (see
            :meth:`serve_recording`, which also takes ``closes=``).
        realtime: With ``replay``: keep the recorded gaps between frames.
        speed: With ``replay`` and ``realtime``: divides the gaps.
    """

"""A real WebSocket server on loopback for tests, with fault injection.

:class:`MockWebSocketServer` is built on the threaded server of the
``websockets`` library (``websockets.sync.server.serve``): every frame on the
wire is real, so clients are tested against genuine handshakes, close codes,
pings, TLS and TCP failures. Nothing is mocked.

Example::

    from zen_websocket.testing import MockWebSocketServer

    with MockWebSocketServer(echo=True) as server:
        ...  # connect a client to server.url and send "hello"
        server.assert_message_sent("hello")
        server.inject_message({"type": "update", "seq": 1})
        server.drop_connections()  # TCP gone, no close frame

One module per concern; import from this package, not from them:

* ``mock_server``: :class:`MockWebSocketServer`, assembled from the parts below.
* ``core``: configuration, recorded state and its lock, accepting TCP connections.
* ``lifecycle``: start, stop (every thread joined), TLS material.
* ``serving``: each connection's life (handshake, message loop, frames) and
  the extension points the exchange emulators override.
* ``recording``: what clients sent; waiting on it and asserting it.
* ``sending``: inject_message, ping_all, streams and feeds (:class:`StreamHandle`).
* ``replay``: recordings (``record_to`` files) served back to clients.
* ``faults``: disconnects, drops, stalls, refusals, handshake rejections, plans.
* ``connection``: :class:`MockConnection`, one client connection.
* ``sockets``: the accept thread and the socket that plays a half-open peer.
* ``timers``: the timer thread (:class:`Timer`).
* ``messages``: encoding and matching messages, valid close codes.

Threads (all named ``mock-ws-...`` and joined by :meth:`MockWebSocketServer.stop`):

* ``mock-ws-accept-<port>``: accepts TCP connections on the listening socket.
* ``mock-ws-conn-<id>``: one per connection; TLS and opening handshake, then
  the message loop that records messages and calls the handler.
* ``mock-ws-recv-<id>``: one per connection; the ``websockets`` thread reading
  the socket (renamed by us).
* ``mock-ws-timer-<port>``: runs timed actions (fault plans, timed stalls,
  emulator heartbeats and pings).
* ``mock-ws-stream-<n>``: one per :meth:`MockWebSocketServer.start_stream` feed.
* ``mock-ws-replay-<id>``: one per connection while a recording is served to it.
* ``mock-ws-close-<id>``: short-lived, closes a connection without blocking the
  thread that asked (e.g. a timer or the receive thread).

Locking: ``MockWebSocketServer._cond`` (a Condition over one lock) guards the
recorded state (``received``, connections, counters, plans, handshake
faults). It is never held while sending, closing or calling user code.
"""

from .connection import MockConnection

# Importable from here as before the split, though not in __all__ (the emulators and tests use them).
from .messages import Expected as Expected
from .messages import Handler as Handler
from .messages import Message as Message
from .messages import encode_message as encode_message
from .messages import message_matches as message_matches
from .mock_server import MockWebSocketServer
from .sending import StreamHandle
from .timers import Timer

__all__ = ["MockWebSocketServer", "MockConnection", "StreamHandle", "Timer"]

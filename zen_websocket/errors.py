"""Exceptions raised by zen_websocket, and how the supervisor treats them.

Every exception the library raises on purpose derives from
:class:`ZenWebSocketError`; where a builtin fits, it is a second base so that
``except ValueError`` or ``except TimeoutError`` keep working::

    ZenWebSocketError
    ├── ConfigError (ValueError)            invalid option, names it
    ├── UsageError (RuntimeError)           misuse: concurrent recv, request from the receive thread
    ├── ConnectError                        an attempt (or all attempts) to connect failed
    ├── NotConnectedError                   send/request while not connected
    ├── ConnectionClosed                    the client is closed for good (recv, iteration)
    │   └── ConnectionLost                  the connection dropped under an in-flight request
    ├── ProtocolError                       the peer broke RFC 6455 (close code 1002/1007)
    ├── MessageTooLarge                     a message over ``max_message_size`` (close 1009)
    ├── HeartbeatTimeout                    heartbeat replies stopped: the peer is dead
    ├── SilenceTimeout                      no frame at all for ``max_silence`` seconds
    ├── RequestTimeout (TimeoutError)       no response to a JSON-RPC request in time
    ├── JsonRpcError                        the server answered a request with an error object
    ├── SubscriptionError                   a subscription was not acknowledged
    ├── RateLimited                         a send would exceed the rate limiter's budget
    └── CallbackError                       a user callback raised (its cause is chained)

:func:`categorize` decides, for any exception, whether reconnecting can help
(``"recoverable"``) or would only repeat the failure (``"fatal"``).
"""

from __future__ import annotations

import errno
import socket
import ssl
from typing import Any, Literal

from .redact import peer_text, safe_text

__all__ = [
    "ZenWebSocketError",
    "ConfigError",
    "UsageError",
    "ConnectError",
    "NotConnectedError",
    "ConnectionClosed",
    "ConnectionLost",
    "ProtocolError",
    "MessageTooLarge",
    "HeartbeatTimeout",
    "SilenceTimeout",
    "RequestTimeout",
    "JsonRpcError",
    "SubscriptionError",
    "RateLimited",
    "CallbackError",
    "Category",
    "categorize",
    "connect_reason",
    "close_code_category",
]

Category = Literal["recoverable", "fatal"]


class ZenWebSocketError(Exception):
    """Base class of every exception zen_websocket raises on purpose."""


# Bounds on what an exception message shows, so that str(exc) stays under
# 1,024 characters whatever the peer sent (a 5 MB error message, a 2 MB
# handshake reason); the full values stay on the exception's attributes.
_PEER_TEXT_LIMIT = 200  # the server's own words (a JSON-RPC error message)
_MESSAGE_LIMIT = 800  # a whole message we composed around peer text
_NAME_LIMIT = 100  # an option name, a method, an id, a code


class ConfigError(ZenWebSocketError, ValueError):
    """An option is invalid. ``option`` names it.

    Messages never show credentials: URLs are shown through
    :func:`~zen_websocket.redact.redact_url`, header values not at all.

    Attributes:
        option: the option's name (``"heartbeat_config.interval"``).
        message: what is wrong with it, in full.
    """

    def __init__(self, option: str, message: str) -> None:
        self.option = option
        self.message = message
        super().__init__(f"{safe_text(str(option), _NAME_LIMIT)}: {safe_text(str(message), _MESSAGE_LIMIT)}")


class UsageError(ZenWebSocketError, RuntimeError):
    """The API was used in a way that would hang or corrupt state."""


class ConnectError(ZenWebSocketError):
    """Connecting failed.

    Attributes:
        reason: ``"timeout"`` (the one deadline of the attempt passed),
            ``"econnrefused"``, ``"nxdomain"``, ``"ehostunreach"``, ``"tls"``,
            ``"proxy"`` (the proxy refused or broke the tunnel, or its support
            package is missing), ``"unauthorized"`` (401/403),
            ``"redirect"`` (3xx: redirects are never followed),
            ``"not_websocket"`` (a 2xx that is not an upgrade),
            ``"handshake_status"`` (any other status),
            ``"bad_handshake"`` (a response that breaks RFC 6455 or a size
            cap), ``"resource_exhausted"`` (this process is out of file
            descriptors or memory: fatal), ``"closed"`` (``close()`` was
            called during the attempt) or ``"error"`` (e.g. the peer closed
            the connection).
        status_code: HTTP status of a rejected upgrade (or proxy tunnel), else None.
        attempts: how many attempts were made.
        message: the message in full; ``str(exc)`` shows it with secrets
            masked, control characters escaped and cut to 800 characters,
            because it may quote the server (a status reason, a body).
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str = "error",
        status_code: int | None = None,
        attempts: int = 1,
    ) -> None:
        self.message = message
        self.reason = reason
        self.status_code = status_code
        self.attempts = attempts
        super().__init__(peer_text(message, _MESSAGE_LIMIT))


class NotConnectedError(ZenWebSocketError):
    """A send or request was made while the client is not connected."""


class ConnectionClosed(ZenWebSocketError):
    """The connection is closed.

    Attributes:
        code: the WebSocket close code, or None if no close frame was seen.
        reason: the close reason (or a short word such as ``"retries_exhausted"``).
    """

    def __init__(self, code: int | None = None, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        detail = f"code={code}" if code is not None else "no close frame"
        super().__init__(f"connection closed ({detail}{', ' + reason if reason else ''})")


class ConnectionLost(ConnectionClosed):
    """The connection dropped while a request was waiting for its response.

    Requests are never re-sent after a reconnect: a re-sent order could fill twice.
    """


class ProtocolError(ZenWebSocketError):
    """The peer violated the WebSocket protocol. ``close_code`` is what we close with."""

    def __init__(self, message: str, close_code: int = 1002) -> None:
        self.close_code = close_code
        super().__init__(message)


class MessageTooLarge(ZenWebSocketError):
    """A message exceeded ``max_message_size``; the connection is closed with 1009."""

    close_code = 1009

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"message of {size} bytes exceeds max_message_size={limit}")


class HeartbeatTimeout(ZenWebSocketError):
    """No heartbeat reply arrived within the heartbeat ``timeout``."""


class SilenceTimeout(ZenWebSocketError):
    """No frame arrived for ``max_silence`` seconds."""


class RequestTimeout(ZenWebSocketError, TimeoutError):
    """A correlated request got no response in time."""

    def __init__(self, request_id: Any, method: str | None, timeout: float | None) -> None:
        self.request_id = request_id
        self.method = method
        self.timeout = timeout
        super().__init__(f"request {method!r} (id={request_id}) got no response within {timeout}s")


class JsonRpcError(ZenWebSocketError):
    """The server answered a request with an error object.

    ``str(exc)`` stays under 1,024 characters: the server's message is shown
    with secrets masked, control characters escaped and cut to 200
    characters; the attributes keep the full values.

    Attributes:
        code: the error code (None when the server sent none).
        message: the error message, in full.
        data: the optional ``data`` member.
        request_id: the id of the failed request.
        method: the method of the failed request, when known.
    """

    def __init__(
        self,
        code: int | None,
        message: str,
        data: Any = None,
        request_id: Any = None,
        method: str | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.data = data
        self.request_id = request_id
        self.method = method
        # Every part may come from the peer (the id and code are echoed from the response).
        shown_method = safe_text(str(method or "request"), _NAME_LIMIT)
        shown_id = safe_text(str(request_id), _NAME_LIMIT)
        shown_code = safe_text(str(code), _NAME_LIMIT)
        super().__init__(
            f"{shown_method} (id={shown_id}) failed: [{shown_code}] {peer_text(message, _PEER_TEXT_LIMIT)}"
        )


class SubscriptionError(ZenWebSocketError):
    """The server did not confirm some channels. ``channels`` lists them."""

    def __init__(self, message: str, channels: list[str] | None = None) -> None:
        self.channels = list(channels or [])
        super().__init__(message)


class RateLimited(ZenWebSocketError):
    """A send would exceed the rate limiter. ``retry_after`` is in seconds."""

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message or f"rate limited, retry after {retry_after:.3f}s")


class CallbackError(ZenWebSocketError):
    """A user callback raised; the original exception is ``__cause__``."""

    def __init__(self, event: str, callback: Any) -> None:
        self.event = event
        self.callback = callback
        name = getattr(callback, "__qualname__", repr(callback))
        super().__init__(f"{event} callback {name} raised")


# Close codes after which reconnecting is pointless: the client (or its
# messages) caused them, so a new connection would be closed the same way.
_FATAL_CLOSE_CODES = frozenset({1002, 1003, 1007, 1009, 1010})


def close_code_category(code: int | None) -> Category:
    """Category of a close received from the server with ``code``.

    1000 (normal), 1001, 1006, 1011-1014 and application codes 3000-4999 are
    recoverable: an exchange closing a socket is not the user closing it.
    """
    if code in _FATAL_CLOSE_CODES:
        return "fatal"
    return "recoverable"


def _status_category(status: int) -> Category:
    if status >= 500 or status in (408, 429):
        return "recoverable"
    if 400 <= status < 500:
        return "fatal"
    # 3xx: redirects are never followed, so a retry gets the same redirect.
    # 2xx instead of 101: the URL is not a WebSocket endpoint.
    if 200 <= status < 400:
        return "fatal"
    # 1xx other than 101: a confused intermediary; another attempt may reach
    # a healthy backend.
    return "recoverable"


def categorize(exc: BaseException) -> Category:
    """Return ``"recoverable"`` or ``"fatal"`` for any exception.

    Recoverable: timeouts, refused/unreachable/DNS failures, TLS alerts, a
    peer that vanished, server closes with 1000/1001/1006/1011-1014 or
    3000-4999, dead heartbeats, ``max_silence``, HTTP 5xx/408/429 on the
    upgrade. Fatal: HTTP 401/403 and other 4xx, a redirect (never
    followed), a 2xx that is not an upgrade, a 101 that breaks RFC 6455 or a
    size cap (``"bad_handshake"``), certificate verification failures,
    protocol violations, :class:`MessageTooLarge`, server closes with
    1002/1003/1007/1009/1010, configuration and usage errors, a missing
    package (ImportError). Unknown exceptions are recoverable (a long-lived
    feed should try again).
    """
    if isinstance(exc, ConnectError):
        # Answers a new attempt would get again: credentials refused, a
        # redirect we never follow, a URL that is not a WebSocket endpoint, a
        # server that breaks the upgrade rules or our size caps.
        if exc.reason in ("unauthorized", "redirect", "not_websocket", "bad_handshake", "resource_exhausted"):
            return "fatal"
        if exc.status_code is not None:
            return _status_category(exc.status_code)
        if exc.__cause__ is not None and exc.__cause__ is not exc:
            return categorize(exc.__cause__)
        return "recoverable"
    if isinstance(exc, (ConfigError, UsageError, ProtocolError, MessageTooLarge, TypeError, ImportError)):
        return "fatal"
    if isinstance(exc, ConnectionClosed):
        return close_code_category(exc.code)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "fatal"
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return _status_category(status)
    return "recoverable"


# This process (or the machine) is out of file descriptors, memory or socket
# buffers: retrying at once only repeats it, and the user must act (raise
# ``ulimit -n``, open fewer connections).
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


def connect_reason(exc: BaseException) -> str:
    """Short reason word for a failed connect attempt (``ConnectError.reason``)."""
    if isinstance(exc, ConnectError):
        return exc.reason
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        if status in (401, 403):
            return "unauthorized"
        if 300 <= status < 400:
            return "redirect"
        if 200 <= status < 300:
            return "not_websocket"
        return "handshake_status"
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, (TimeoutError, socket.timeout)) or type(exc).__name__ == "WebSocketTimeoutException":
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "econnrefused"
    if isinstance(exc, socket.gaierror) or type(exc).__name__ == "WebSocketAddressException":
        return "nxdomain"
    if isinstance(exc, OSError) and exc.errno in _RESOURCE_ERRNOS:
        return "resource_exhausted"
    if isinstance(exc, OSError) and exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "ehostunreach"
    if isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED:
        return "econnrefused"
    return "error"

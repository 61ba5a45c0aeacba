"""Messages as the mock server sees them: encoding, matching, and which close codes may be sent."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .connection import MockConnection

__all__ = ["Expected", "Handler", "Message", "encode_message", "message_matches"]

Message = str | bytes
"""A WebSocket message as recorded: ``str`` for text frames, ``bytes`` for binary."""

Handler = Callable[["MockConnection", Message], Any]
Expected = str | bytes | re.Pattern[str] | re.Pattern[bytes] | Mapping[str, Any] | Callable[[Message], bool]

# Close codes an endpoint must never put in a close frame (RFC 6455, 7.4.1).
_RESERVED_CLOSE_CODES = frozenset({1004, 1005, 1006, 1015})


def encode_message(data: Any) -> Message:
    """Turn ``data`` into a WebSocket message: str/bytes as is, dict/list as JSON text.

    Raises:
        TypeError: For any other type.
    """
    if isinstance(data, str | bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    if isinstance(data, dict | list):
        return json.dumps(data, separators=(",", ":"))
    raise TypeError(f"cannot send {type(data).__name__}: expected str, bytes, dict or list")


def _decode_json(message: Message) -> Any:
    try:
        return json.loads(message)
    except (ValueError, TypeError):
        return _NO_JSON


_NO_JSON = object()


def _partial_match(expected: Mapping[str, Any], actual: Any) -> bool:
    if not isinstance(actual, dict):
        return False
    for key, value in expected.items():
        if key not in actual:
            return False
        if isinstance(value, Mapping):
            if not _partial_match(value, actual[key]):
                return False
        elif actual[key] != value:
            return False
    return True


def message_matches(expected: Expected, message: Message) -> bool:
    """Whether ``message`` matches ``expected`` (see :meth:`MockWebSocketServer.assert_message_sent`)."""
    if isinstance(expected, str | bytes):
        return message == expected
    if isinstance(expected, re.Pattern):
        if isinstance(expected.pattern, str) != isinstance(message, str):
            return False
        return expected.search(message) is not None  # type: ignore[arg-type]
    if isinstance(expected, Mapping):
        return _partial_match(expected, _decode_json(message))
    if callable(expected):
        try:
            return bool(expected(message))
        except Exception:
            # A predicate written for one message shape (e.g. json.loads(m)["id"])
            # fails on other messages: that is "no match", not an error.
            return False
    raise TypeError(f"unsupported expectation {expected!r}")


def _short(message: Message, limit: int = 200) -> str:
    text = repr(message)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_close_code(code: int) -> None:
    if code in _RESERVED_CLOSE_CODES or not (1000 <= code <= 4999) or 1016 <= code <= 2999:
        raise ValueError(f"close code {code} cannot be sent in a close frame (use drop_connections() for 1006)")

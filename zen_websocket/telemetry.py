"""Telemetry: named handlers attached to event tuples, as in Elixir's ``:telemetry``.

A handler is called as ``fn(event, measurements, metadata, config)`` in the
thread that emitted the event, so it must be quick. A handler that raises is
detached and logged with its traceback: a broken metrics exporter must never
take a feed down.

Example::

    import zen_websocket as zw

    def on_event(event, measurements, metadata, config):
        print(event[-1], measurements, metadata["name"])

    zw.telemetry.attach("printer", ("zen_websocket", "client", "connect"), on_event)

With no handler attached to an event, emitting it costs one dictionary
lookup (``handlers_for``), which the library does before it builds the
measurement and metadata dicts.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "Event",
    "Handler",
    "attach",
    "attach_many",
    "detach",
    "execute",
    "list_handlers",
    "handlers_for",
    "EVENTS",
    "CONNECT",
    "DISCONNECT",
    "CLOSE",
    "ERROR",
    "MESSAGE_RECEIVED",
    "MESSAGE_SENT",
    "QUEUE_OVERFLOW",
    "CALLBACK_ERROR",
    "ROTATE",
    "RECONNECT_ATTEMPT",
    "RECONNECT_SUCCESS",
    "RECONNECT_GIVE_UP",
    "HEARTBEAT_SENT",
    "HEARTBEAT_REPLY",
    "HEARTBEAT_FAILURE",
    "REQUEST_START",
    "REQUEST_STOP",
    "REQUEST_TIMEOUT",
    "RATE_LIMIT_WAIT",
    "RATE_LIMIT_REJECT",
    "SUBSCRIPTION_ADD",
    "SUBSCRIPTION_REMOVE",
    "SUBSCRIPTION_RESTORE",
    "SUBSCRIPTION_ERROR",
]

logger = logging.getLogger(__name__)

Event = tuple[str, ...]
Handler = Callable[[Event, dict[str, Any], dict[str, Any], Any], None]

_PREFIX = ("zen_websocket",)

# The events the library emits: the one place their names are written.
CONNECT: Event = (*_PREFIX, "client", "connect")
DISCONNECT: Event = (*_PREFIX, "client", "disconnect")
CLOSE: Event = (*_PREFIX, "client", "close")
ERROR: Event = (*_PREFIX, "client", "error")
MESSAGE_RECEIVED: Event = (*_PREFIX, "client", "message_received")
MESSAGE_SENT: Event = (*_PREFIX, "client", "message_sent")
QUEUE_OVERFLOW: Event = (*_PREFIX, "client", "queue_overflow")
CALLBACK_ERROR: Event = (*_PREFIX, "client", "callback_error")
ROTATE: Event = (*_PREFIX, "client", "rotate")
RECONNECT_ATTEMPT: Event = (*_PREFIX, "reconnect", "attempt")
RECONNECT_SUCCESS: Event = (*_PREFIX, "reconnect", "success")
RECONNECT_GIVE_UP: Event = (*_PREFIX, "reconnect", "give_up")
HEARTBEAT_SENT: Event = (*_PREFIX, "heartbeat", "sent")
HEARTBEAT_REPLY: Event = (*_PREFIX, "heartbeat", "reply")
HEARTBEAT_FAILURE: Event = (*_PREFIX, "heartbeat", "failure")
REQUEST_START: Event = (*_PREFIX, "request", "start")
REQUEST_STOP: Event = (*_PREFIX, "request", "stop")
REQUEST_TIMEOUT: Event = (*_PREFIX, "request", "timeout")
RATE_LIMIT_WAIT: Event = (*_PREFIX, "rate_limit", "wait")
RATE_LIMIT_REJECT: Event = (*_PREFIX, "rate_limit", "reject")
SUBSCRIPTION_ADD: Event = (*_PREFIX, "subscription", "add")
SUBSCRIPTION_REMOVE: Event = (*_PREFIX, "subscription", "remove")
SUBSCRIPTION_RESTORE: Event = (*_PREFIX, "subscription", "restore")
SUBSCRIPTION_ERROR: Event = (*_PREFIX, "subscription", "error")

#: Every event the library emits, for ``attach_many`` and documentation.
EVENTS: tuple[Event, ...] = (
    CONNECT,
    DISCONNECT,
    CLOSE,
    ERROR,
    MESSAGE_RECEIVED,
    MESSAGE_SENT,
    QUEUE_OVERFLOW,
    CALLBACK_ERROR,
    ROTATE,
    RECONNECT_ATTEMPT,
    RECONNECT_SUCCESS,
    RECONNECT_GIVE_UP,
    HEARTBEAT_SENT,
    HEARTBEAT_REPLY,
    HEARTBEAT_FAILURE,
    REQUEST_START,
    REQUEST_STOP,
    REQUEST_TIMEOUT,
    RATE_LIMIT_WAIT,
    RATE_LIMIT_REJECT,
    SUBSCRIPTION_ADD,
    SUBSCRIPTION_REMOVE,
    SUBSCRIPTION_RESTORE,
    SUBSCRIPTION_ERROR,
)

# Copy-on-write: writers replace the dict under the lock; readers (emitters,
# on every message) look it up without locking.
_lock = threading.Lock()
_by_event: dict[Event, tuple[tuple[str, Handler, Any], ...]] = {}


def attach(handler_id: str, event: Iterable[str], fn: Handler, config: Any = None) -> None:
    """Attach ``fn`` to one event under ``handler_id``.

    Raises:
        ValueError: ``handler_id`` is already attached.
        TypeError: ``fn`` is not callable.
    """
    attach_many(handler_id, [event], fn, config)


def attach_many(handler_id: str, events: Iterable[Iterable[str]], fn: Handler, config: Any = None) -> None:
    """Attach ``fn`` to several events under one ``handler_id``."""
    global _by_event
    if not callable(fn):
        raise TypeError("telemetry handler must be callable")
    keys = [tuple(event) for event in events]
    with _lock:
        if any(hid == handler_id for entries in _by_event.values() for hid, _, _ in entries):
            raise ValueError(f"telemetry handler {handler_id!r} is already attached")
        table = dict(_by_event)
        for key in keys:
            table[key] = table.get(key, ()) + ((handler_id, fn, config),)
        _by_event = table


def detach(handler_id: str) -> bool:
    """Detach every event of ``handler_id``; True if it was attached."""
    global _by_event
    with _lock:
        found = False
        table: dict[Event, tuple[tuple[str, Handler, Any], ...]] = {}
        for key, entries in _by_event.items():
            kept = tuple(entry for entry in entries if entry[0] != handler_id)
            found = found or len(kept) != len(entries)
            if kept:
                table[key] = kept
        _by_event = table
        return found


def list_handlers(prefix: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Handlers whose event starts with ``prefix``, as dicts (id, event, function, config)."""
    start = tuple(prefix)
    return [
        {"id": hid, "event": key, "function": fn, "config": config}
        for key, entries in _by_event.items()
        if key[: len(start)] == start
        for hid, fn, config in entries
    ]


def handlers_for(event: Event) -> tuple[tuple[str, Handler, Any], ...] | None:
    """The handlers of ``event`` or None: the one lookup a silent emit costs."""
    return _by_event.get(event)


def execute(event: Iterable[str], measurements: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
    """Call every handler attached to ``event``."""
    key = tuple(event)
    entries = _by_event.get(key)
    if entries:
        dispatch(entries, key, measurements, metadata or {})


def dispatch(
    entries: tuple[tuple[str, Handler, Any], ...],
    event: Event,
    measurements: dict[str, Any],
    metadata: dict[str, Any],
) -> None:
    """Run ``entries`` (from :func:`handlers_for`); detach any that raises."""
    for handler_id, fn, config in entries:
        try:
            fn(event, measurements, metadata, config)
        except Exception:
            logger.exception("telemetry handler %r raised on %s; detaching it", handler_id, event)
            detach(handler_id)

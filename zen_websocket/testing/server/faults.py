"""Fault injection: close, drop, stall, refuse, reject or hang, now or planned per TCP connection.

The public methods live on :class:`_Faults`; the connection path
(``serving.py``) asks :func:`_take_handshake_fault` what an opening handshake
gets and :func:`_apply_fault` to schedule a planned fault after it. The accept
path (``core.py``) takes plan items and plays ``("refuse", duration)``.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .connection import MockConnection
from .core import _ServerCore
from .messages import _check_close_code

# Internal to the package: nothing here is public API.
__all__: list[str] = []

_FAULT_ARITY = {"drop": 2, "close": 3, "stall": 3, "reject": 2, "refuse": 2}


def _validate_fault(fault: Any) -> tuple[Any, ...] | None:
    if fault is None:
        return None
    if isinstance(fault, str):
        fault = (fault,)
    if not isinstance(fault, tuple) or not fault or fault[0] not in _FAULT_ARITY:
        raise ValueError(
            f"unknown fault {fault!r}: expected None or a tuple starting with one of {sorted(_FAULT_ARITY)}"
        )
    kind = fault[0]
    defaults: dict[str, tuple[Any, ...]] = {
        "drop": ("drop", 0.0),
        "close": ("close", 1000, 0.0),
        "stall": ("stall", 0.0, None),
        "reject": ("reject", 503),
        "refuse": ("refuse", 0.5),
    }
    full = fault + defaults[kind][len(fault) :]
    if len(full) != _FAULT_ARITY[kind]:
        raise ValueError(f"fault {fault!r} has too many items")
    if kind == "close":
        _check_close_code(full[1])
    return full


@dataclass
class _Rejection:
    status: int
    remaining: int | None
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


def _take_handshake_fault(
    server: _ServerCore, planned: tuple[Any, ...] | None
) -> tuple[str | None, _Rejection | None, threading.Event | None]:
    """Connection thread: what this opening handshake gets, using up one-shot settings.

    Args:
        server: The server whose fault settings apply.
        planned: The fault the plan gave this TCP connection, if any.

    Returns:
        ``(action, rejection, hang)``: ``action`` is ``"reset"`` or ``None``;
        ``rejection`` the HTTP error to answer with; ``hang`` an event to wait
        on before resetting.
    """
    action: str | None = None
    rejection: _Rejection | None = None
    hang: threading.Event | None = None
    with server._cond:
        if planned is not None and planned[0] == "reject":
            rejection = _Rejection(planned[1], None)
        elif server._reset_times > 0:
            server._reset_times -= 1
            action = "reset"
        elif server._hang_event is not None:
            hang = server._hang_event
        elif server._rejection is not None:
            rejection = server._rejection
            if rejection.remaining is not None:
                rejection.remaining -= 1
                if rejection.remaining <= 0:
                    server._rejection = None
    return action, rejection, hang


def _apply_fault(conn: MockConnection, fault: tuple[Any, ...]) -> None:
    """Connection thread, after the opening handshake: schedule a planned drop, close or stall."""
    kind = fault[0]
    if kind == "drop":
        conn.call_later(fault[1], conn.drop)
    elif kind == "close":
        code = fault[1]
        conn.call_later(fault[2], lambda: conn.close(code, "planned close", wait=False))
    elif kind == "stall":
        duration = fault[2]
        conn.call_later(fault[1], lambda: conn.stall(duration))


class _Faults(_ServerCore):
    """The fault-injection methods of :class:`MockWebSocketServer`."""

    def simulate_disconnect(self, code: int = 1000, reason: str = "") -> int:
        """Close every open connection with a proper close handshake.

        Waits (at most ``close_timeout``) for the clients to answer.

        Returns:
            The number of connections closed.
        """
        _check_close_code(code)
        conns = self.connections
        threads = [self._spawn(f"mock-ws-close-{c.id}", functools.partial(c._close_now, code, reason)) for c in conns]
        deadline = time.monotonic() + self.close_timeout + 0.5
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return len(conns)

    def drop_connections(self, rst: bool = False) -> int:
        """Make every connection's TCP disappear without a close frame (client sees 1006).

        Args:
            rst: Send a TCP reset (SO_LINGER 0) instead of a FIN.

        Returns:
            The number of connections dropped.
        """
        conns = self.connections
        for conn in conns:
            conn.drop(rst)
        self.wait_for(lambda: not any(c in self._open for c in conns), self.close_timeout)
        return len(conns)

    def stall(self, seconds: float | None = None) -> int:
        """Stall every open connection (a half-open peer); see :meth:`MockConnection.stall`.

        Connections opened later are not stalled.

        Args:
            seconds: Duration; ``None`` until :meth:`resume`.

        Returns:
            The number of connections stalled.
        """
        conns = self.connections
        for conn in conns:
            conn.stall(seconds)
        return len(conns)

    def resume(self) -> None:
        """End every stall."""
        for conn in self.connections:
            conn.resume()

    def refuse_connections(self, flag: bool = True) -> None:
        """Refuse new TCP connections for real (the client gets ECONNREFUSED).

        While refusing, the listening socket is closed; existing connections
        are kept. ``refuse_connections(False)`` listens again on the same port.

        Raises:
            OSError: If the port cannot be bound again.
        """
        with self._lifecycle_lock:
            if self._state != "running":
                raise RuntimeError("server not running")
            if flag and self._listener is not None:
                listener, self._listener = self._listener, None
                listener.close()
            elif not flag and self._listener is None:
                self._listen_again()
            self._refusing = flag

    def restart(self) -> None:
        """Drop every connection (no close frame) and listen again on the same port."""
        with self._lifecycle_lock:
            if self._state != "running":
                raise RuntimeError("server not running")
            if self._listener is not None:
                listener, self._listener = self._listener, None
                listener.close()
            self.drop_connections()
            self._listen_again()
            self._refusing = False

    def reject_handshake(
        self,
        status: int | None = 503,
        times: int | None = None,
        headers: Mapping[str, str] | None = None,
        body: str = "",
    ) -> None:
        """Answer opening handshakes with an HTTP error instead of 101.

        Args:
            status: HTTP status (401, 403, 429, 503...); ``None`` accepts again.
            times: Reject only the next ``times`` handshakes; ``None``: until
                :meth:`accept_handshakes`.
            headers: Extra response headers, e.g. ``{"Retry-After": "1"}``.
            body: Response body (default: the status phrase).
        """
        with self._cond:
            if status is None:
                self._rejection = None
            else:
                self._rejection = _Rejection(int(status), times, dict(headers or {}), body)

    def accept_handshakes(self) -> None:
        """Stop rejecting handshakes (undo :meth:`reject_handshake`)."""
        self.reject_handshake(None)

    def hang_handshake(self, flag: bool = True) -> None:
        """Accept TCP (and TLS) but never answer the upgrade request.

        ``hang_handshake(False)`` releases the hung connections, which are then
        reset (their clients have timed out long ago) and serves normally.
        """
        with self._cond:
            if flag:
                if self._hang_event is None:
                    self._hang_event = threading.Event()
                return
            event, self._hang_event = self._hang_event, None
        if event is not None:
            event.set()

    def reset_during_handshake(self, times: int = 1) -> None:
        """For the next ``times`` connections: read the upgrade request, then reset TCP."""
        with self._cond:
            self._reset_times = times

    def plan(self, faults: Iterable[Any]) -> None:
        """Give successive TCP connections a fault each, in order (chaos tests).

        The first connection accepted after this call gets ``faults[0]``, the
        next one ``faults[1]``...; once the list is used up, connections
        behave normally. A new call replaces the remaining plan. Items:

        * ``None``: behave normally.
        * ``("drop", after)``: drop TCP (no close frame) ``after`` seconds
          after the opening handshake.
        * ``("close", code, after)``: close handshake with ``code`` after ``after`` s.
        * ``("stall", after, duration)``: stall after ``after`` s for
          ``duration`` s (``None``: until :meth:`resume`).
        * ``("reject", status)``: answer the opening handshake with ``status``.
        * ``("refuse", duration)``: this connection is reset at once (the
          kernel had already accepted it) and the server stops listening for
          ``duration`` s, so attempts meanwhile get ECONNREFUSED; they do not
          consume plan items.

        Example::

            server.plan([("reject", 503), ("refuse", 0.2), ("drop", 0.05), None])

        Raises:
            ValueError: For a malformed item.
        """
        validated = [_validate_fault(f) for f in faults]
        with self._cond:
            self._plan = validated

    @property
    def plan_remaining(self) -> int:
        """Number of plan items not yet used."""
        with self._cond:
            return len(self._plan)

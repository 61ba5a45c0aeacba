"""The life of one logical connection, without I/O: events in, actions out.

A :class:`Session` is told what happened and answers what to do; it never
touches a socket, starts a thread or reads a clock (``now`` is passed in), so
a whole reconnect story (attempts failing, backoff, a dead heartbeat, a flood
of Deribit ``test_request`` notifications) runs in a unit test in microseconds.
The threaded driver (:mod:`zen_websocket.connection`) feeds it and carries
out its answers.

Events in, and what comes back:

- ``attempt_failed(exc)`` / ``connection_lost(exc)`` -> :class:`Retry` (wait
  ``delay``, then try again) or :class:`Stop` (the client ends: ``reason``,
  and ``fatal`` when the error should be reported). This is the one retry
  loop of the library; the first ``connect()``, every reconnect and every
  failed reconnect attempt go through it, with one classifier
  (:meth:`Session.is_fatal`: the user's ``is_fatal`` predicate, then
  :func:`~zen_websocket.errors.categorize`).
- ``connected(now)`` -> the heartbeat clock starts; the retry count resets.
- ``frame_received(now)`` -> liveness (a float store on the hot path).
- ``text_received(text, now)`` -> None (deliver it to the user) or an
  :class:`Inbound` action: a correlated response to complete, a heartbeat
  reply, a Deribit ``test_request`` to answer, or traffic to swallow. The
  subscription dialect (:meth:`Session.use_dialect`) has its say first on
  text carrying one of its markers: acknowledgements it matches itself
  (OKX, Bybit) and control events that ask for a rotation (Binance
  ``serverShutdown``, ``listenKeyExpired``); see
  :mod:`zen_websocket.subscriptions`.
- ``tick(now)`` -> a list of :class:`SendHeartbeat` / :class:`Dead` actions and
  the requests that timed out; ``next_wakeup()`` says when to tick again.

Thread safety: the driver calls ``text_received`` and ``frame_received``
from the receive thread and ``tick`` from the timer thread; the state they
share (the heartbeat monitor) is guarded by ``_hb_lock``. The retry methods
are called by one thread at a time (whichever runs the attempts).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import jsonrpc
from .config import ClientConfig
from .errors import (
    ConnectionClosed,
    HeartbeatTimeout,
    MessageTooLarge,
    ProtocolError,
    SilenceTimeout,
    categorize,
)
from .heartbeat import HeartbeatMonitor
from .reconnect import Backoff
from .subscriptions import Dialect

__all__ = [
    "Dead",
    "Inbound",
    "Retry",
    "Rotate",
    "SendHeartbeat",
    "Session",
    "Stop",
    "loss_reason",
]

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------
# Actions
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Retry:
    """Try to connect again after ``delay`` seconds; ``attempt`` is the attempt's number (1 = first retry)."""

    delay: float
    attempt: int


@dataclass(frozen=True)
class Stop:
    """The client ends.

    Attributes:
        reason: ``"retries_exhausted"``, ``"fatal_error"``, or the loss reason
            when automatic reconnects are off.
        fatal: the error is fatal and must be reported (``error`` event).
        exc: the error that ended it.
    """

    reason: str
    fatal: bool
    exc: BaseException | None


@dataclass(frozen=True)
class SendHeartbeat:
    """Send the configured heartbeat now (a ping, or the custom message)."""

    kind: str
    message: Any = None


@dataclass(frozen=True)
class Rotate:
    """The connection reached ``max_connection_age``: replace it make-before-break."""


@dataclass(frozen=True)
class Dead:
    """The peer is dead (heartbeat unanswered or silence): drop the connection with ``exc``."""

    exc: BaseException


class Inbound:
    """What to do with a text message the library consumes (or shares).

    Attributes:
        kind: ``"response"`` (complete ``pending`` with ``message``),
            ``"heartbeat"`` (a reply to our heartbeat or a server heartbeat),
            ``"test_request"`` (Deribit wants ``public/test`` now),
            ``"coalesced"`` (a ``test_request`` while one answer is already in
            flight: swallowed), ``"ack"`` (a partial or orphaned subscription
            acknowledgement: swallowed), ``"rotate"`` or ``"renew"`` (a
            control event of the dialect: rotate the connection, after
            :meth:`Dialect.renew` for ``"renew"``; delivered too).
        pending: the request a response completes.
        message: the decoded message.
        deliver: the user receives the message too (``send_message`` futures).
    """

    __slots__ = ("deliver", "kind", "message", "pending")

    def __init__(
        self,
        kind: str,
        *,
        pending: jsonrpc.PendingRequest | None = None,
        message: Any = None,
        deliver: bool = False,
    ) -> None:
        self.kind = kind
        self.pending = pending
        self.message = message
        self.deliver = deliver

    def __repr__(self) -> str:
        return f"Inbound({self.kind!r}, deliver={self.deliver})"


_HEARTBEAT = Inbound("heartbeat")
_COALESCED = Inbound("coalesced")
_TEST_REQUEST = Inbound("test_request")
_ACK = Inbound("ack")


def loss_reason(exc: BaseException | None) -> str:
    """The short word a ``disconnect`` event and metrics use for a lost connection."""
    if isinstance(exc, HeartbeatTimeout):
        return "heartbeat_timeout"
    if isinstance(exc, SilenceTimeout):
        return "max_silence"
    if isinstance(exc, MessageTooLarge):
        return "message_too_large"
    if isinstance(exc, ProtocolError):
        return "protocol_error"
    if isinstance(exc, ConnectionClosed):
        if exc.code is not None:
            return f"remote_close:{exc.code}"
        return exc.reason if exc.reason in _WORD_REASONS else "connection_dropped"
    if exc is None:
        return "unknown"
    return type(exc).__name__


# Loss reasons the driver sets as the ConnectionClosed reason itself.
_WORD_REASONS = frozenset({"write_timeout"})


# ---------------------------------------------------------------------------
# The session
# ---------------------------------------------------------------------------


class Session:
    """Policy for one logical connection: retries, liveness, library traffic.

    Args:
        config: the client's options.
        correlator: the client's request table (responses are matched here).
        random: the jitter's random source (injectable for tests).
    """

    # Slots: one session per client, a thousand clients in a process.
    __slots__ = (
        "_dialect_markers",
        "_expect",
        "_hb_lock",
        "_policy",
        "_random",
        "_send_heartbeat",
        "attempts",
        "config",
        "correlator",
        "dialect",
        "filters_text",
        "heartbeat",
        "heartbeat_type",
        "parse_errors",
        "rotate_at",
        "test_in_flight",
        "test_requests",
        "test_requests_coalesced",
        "unmatched_responses",
    )

    def __init__(
        self,
        config: ClientConfig,
        correlator: jsonrpc.Correlator,
        *,
        random: Callable[[], float] | None = None,
    ) -> None:
        self.config = config
        self.correlator = correlator
        self._random = random
        self._policy = self._fresh_policy()
        self.attempts = 0  # attempts in the current retry loop

        self._hb_lock = threading.Lock()  # guards heartbeat (receive thread vs timer thread)
        self.heartbeat = HeartbeatMonitor(config.heartbeat_config, config.max_silence)
        hb = config.heartbeat_config
        self.heartbeat_type = hb.type if hb else None
        self._expect = hb.expect if hb and hb.type == "custom" else None
        # The one action every heartbeat of this session repeats (it is immutable).
        self._send_heartbeat = SendHeartbeat(hb.type, hb.message) if hb else None
        # Text needs a look before delivery only when something may consume
        # it: a response to a request in flight, or heartbeat traffic.
        self.filters_text = self.heartbeat_type == "deribit" or self._expect is not None
        # The client's subscription dialect, when it looks at incoming text
        # itself (use_dialect): the substrings that make a message its business.
        self.dialect: Dialect | None = None
        self._dialect_markers: tuple[str, ...] = ()

        # Deribit test_request answers: at most one in flight. A server (or an
        # attacker) flooding test_requests gets one answer per round trip
        # instead of a pending request per notification.
        self.test_in_flight: Any = None  # the Future of the public/test in flight
        self.rotate_at: float | None = None  # when max_connection_age is reached
        self.test_requests = 0
        self.test_requests_coalesced = 0
        self.parse_errors = 0
        self.unmatched_responses = 0

    # -- the retry loop -------------------------------------------------

    def _fresh_policy(self) -> Backoff:
        c = self.config
        return Backoff(c.retry_delay, c.max_backoff, c.jitter, c.retry_count)

    def is_fatal(self, exc: BaseException) -> bool:
        """The one classifier: the user's ``is_fatal`` predicate first, then :func:`categorize`."""
        predicate = self.config.is_fatal
        if predicate is not None:
            try:
                if predicate(exc):
                    return True
            except Exception:
                logger.exception("is_fatal predicate raised; treating the error by its category")
        return categorize(exc) == "fatal"

    def begin_connect(self) -> None:
        """The first ``connect()`` starts a retry loop: nothing failed yet."""
        self._policy = self._fresh_policy()
        self.attempts = 0

    def attempt_failed(self, exc: BaseException) -> Retry | Stop:
        """An attempt to connect failed with ``exc``: retry after a delay, or stop."""
        self.attempts += 1
        return self._next(exc)

    def connection_lost(self, exc: BaseException) -> Retry | Stop:
        """An established connection was lost: reconnect after a delay, or stop.

        The loss counts as the first failure of a new retry loop, so a
        reconnect makes at most ``retry_count`` attempts and the delay before
        the n-th is ``retry_delay * 2**n`` (n from 0).
        """
        self._policy = self._fresh_policy()
        self.attempts = 0
        if self.is_fatal(exc):
            return Stop(loss_reason(exc), True, exc)
        if not self.config.reconnect_on_error:
            return Stop(loss_reason(exc), False, exc)
        return self._next(exc)

    def _next(self, exc: BaseException) -> Retry | Stop:
        if self.is_fatal(exc):
            return Stop(getattr(exc, "reason", None) or "fatal_error", True, exc)
        policy = self._policy
        if policy.exhausted:
            return Stop("retries_exhausted", False, exc)
        delay = policy.delay() if self._random is None else policy.delay(self._random)
        self._policy = policy.increment()
        return Retry(delay, self.attempts + 1)

    def connected(self, now: float) -> None:
        """A connection is up: the heartbeat and connection-age clocks start.

        (The retry count needs no reset here: the next loss starts a fresh loop.)
        """
        self.test_in_flight = None
        age = self.config.max_connection_age
        self.rotate_at = None if age is None else now + age
        with self._hb_lock:
            self.heartbeat.start(now)

    def disconnected(self) -> None:
        """The connection is gone: nothing to time until :meth:`connected`."""
        with self._hb_lock:
            self.heartbeat.stop()
        self.test_in_flight = None
        self.rotate_at = None
        if self.dialect is not None:
            self.dialect.forget_acks()

    def use_dialect(self, dialect: Dialect) -> None:
        """Let the client's subscription dialect look at incoming text with its markers.

        Acknowledgements it matches itself (``ack_markers``) and control
        events (``event_markers``); a dialect with neither costs nothing on
        the receive path. Call before the first connection.
        """
        self.dialect = dialect
        self._dialect_markers = tuple(dialect.ack_markers) + tuple(dialect.event_markers)
        if self._dialect_markers:
            self.filters_text = True

    def rotation_failed(self, now: float) -> None:
        """A rotation failed (the old connection stays): try again a tenth of the age later (at most a minute)."""
        age = self.config.max_connection_age
        if age is not None:
            self.rotate_at = now + min(age / 10, 60.0)

    # -- liveness --------------------------------------------------------

    def frame_received(self, now: float) -> None:
        """Any frame proves the peer alive (one float store: the receive thread's hot path)."""
        self.heartbeat.last_frame_at = now

    def heartbeat_reply(self, now: float) -> float | None:
        """A pong or heartbeat reply arrived; returns the round trip when one of ours was waiting."""
        with self._hb_lock:
            return self.heartbeat.on_reply(now)

    def heartbeat_sent(self, now: float) -> None:
        """The driver sent (or tried to send) the heartbeat that :meth:`tick` asked for."""
        with self._hb_lock:
            self.heartbeat.on_sent(now)

    def tick(self, now: float) -> tuple[list[SendHeartbeat | Dead | Rotate], list[jsonrpc.PendingRequest]]:
        """Everything due at ``now``: heartbeat actions, then the requests that timed out.

        A death verdict ends the list (nothing more is sent to a dead peer).
        Expired requests are failed here with ``RequestTimeout`` (their
        futures complete in the caller's thread).
        """
        actions: list[SendHeartbeat | Dead | Rotate] = []
        with self._hb_lock:
            verdict = self.heartbeat.poll(now)
        if verdict == "send":
            assert self._send_heartbeat is not None
            actions.append(self._send_heartbeat)
        elif verdict == "dead_heartbeat":
            cfg = self.config.heartbeat_config
            timeout = (cfg.timeout or cfg.interval) if cfg else None
            actions.append(Dead(HeartbeatTimeout(f"no heartbeat reply within {timeout}s")))
        elif verdict == "dead_silence":
            actions.append(Dead(SilenceTimeout(f"no frame for {self.config.max_silence}s")))
        if self.rotate_at is not None and now >= self.rotate_at and not (actions and isinstance(actions[-1], Dead)):
            self.rotate_at = None  # the driver rotates, or reports rotation_failed()
            actions.append(Rotate())
        expired = self.correlator.expire(now)
        return actions, expired

    def next_wakeup(self) -> float | None:
        """When :meth:`tick` has something to do next (monotonic), or None."""
        with self._hb_lock:
            earliest = self.heartbeat.next_deadline()
        # Without building a list: the timer thread asks once per heartbeat of every client.
        for deadline in (self.correlator.next_deadline(), self.rotate_at):
            if deadline is not None and (earliest is None or deadline < earliest):
                earliest = deadline
        return earliest

    # -- library traffic ----------------------------------------------------

    def text_received(self, text: str, now: float) -> Inbound | None:
        """Decide whether a text message is the library's; None means deliver it to the user.

        Never raises: a message that cannot be decoded (invalid or absurdly
        nested JSON) is counted in ``parse_errors`` and delivered as it is.
        """
        expect = self._expect
        if expect is not None:
            matched = text == expect if isinstance(expect, str) else _safe_predicate(expect, text)
            if matched:
                return _HEARTBEAT
        ours = False
        for marker in self._dialect_markers:
            if marker in text:
                ours = True
                break
        deribit = self.heartbeat_type == "deribit" and "heartbeat" in text
        if not deribit and not ours and not (len(self.correlator) and jsonrpc.may_be_response(text)):
            return None
        try:
            message = json.loads(text)
        except (ValueError, RecursionError, MemoryError):
            # RecursionError: a deeply nested array from a hostile peer; the
            # C decoder gives up cleanly, and the text is still a message.
            self.parse_errors += 1
            return None
        if not isinstance(message, dict):
            return None
        if ours:
            action = self._dialect_message(message)
            if action is not None:
                return action
        if deribit and message.get("method") == "heartbeat":
            params = message.get("params")
            if isinstance(params, dict) and params.get("type") == "test_request":
                in_flight = self.test_in_flight
                if in_flight is not None and not in_flight.done():
                    self.test_requests_coalesced += 1
                    return _COALESCED
                self.test_requests += 1
                return _TEST_REQUEST
            return _HEARTBEAT
        if message.get("id") is None:
            return None
        pending = self.correlator.take(message)
        if pending is None:
            if "result" in message or "error" in message:
                self.unmatched_responses += 1
            return None
        return Inbound("response", pending=pending, message=message, deliver=pending.deliver)

    def _dialect_message(self, message: dict[str, Any]) -> Inbound | None:
        """The dialect's verdict on a message with one of its markers (None: not its business)."""
        dialect = self.dialect
        assert dialect is not None
        try:
            ack = dialect.match_ack(message) if dialect.ack_markers else None
            if ack is None:
                action = dialect.event_action(message) if dialect.event_markers else None
                return None if action is None else Inbound(action, message=message, deliver=True)
        except Exception:
            # Dialect code runs in the receive thread: a bug there must not
            # end it; the message goes to the user as it is.
            logger.exception("subscription dialect %r failed on a message", dialect)
            return None
        if not ack.done:
            return _ACK
        pending = self.correlator.take_id(ack.request_id)
        if pending is None:
            if ack.request_id is not None:
                self.unmatched_responses += 1
            return _ACK  # an acknowledgement nobody waits for any more: still not the user's
        return Inbound("response", pending=pending, message=ack.response, deliver=pending.deliver)


def _safe_predicate(predicate: Callable[[Any], bool], message: Any) -> bool:
    try:
        return bool(predicate(message))
    except Exception:
        logger.exception("heartbeat expect predicate raised")
        return False

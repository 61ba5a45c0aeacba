"""Heartbeat decisions without I/O: when to send, when a peer is dead.

The client's supervisor thread owns a :class:`HeartbeatMonitor`, tells it
what happened (a frame arrived, a heartbeat went out, a reply came back) and
asks it two things: when to wake up next (:meth:`next_deadline`) and what to
do now (:meth:`poll`). Everything takes ``now`` from the caller's monotonic
clock, so the logic is tested without sockets or sleeping.

Per type:

- ``"ping"``: send a ping every ``interval``; a ping unanswered for
  ``timeout`` means the peer is dead.
- ``"deribit"``: the server sends heartbeats every ``interval`` (after
  ``public/set_heartbeat``); no frame for ``interval + timeout`` means dead.
- ``"custom"``: send ``message`` every ``interval``; with ``expect``, a
  heartbeat unanswered for ``timeout`` means dead. Without ``expect`` it is
  only sent (use ``max_silence`` to catch a silent peer).

``max_silence`` (any type, or none): no frame at all for that long means dead.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from .config import HeartbeatConfig

__all__ = ["Action", "HeartbeatMonitor"]

Action = Literal["send", "dead_heartbeat", "dead_silence"]


class HeartbeatMonitor:
    """Tracks one connection's liveness.

    Not thread-safe by itself: the client updates ``last_frame_at`` from the
    receive thread (a single float store, atomic under the GIL) and calls
    everything else from the supervisor thread or under its own lock.
    """

    # Slots: one monitor per client, a thousand clients in a process.
    __slots__ = (
        "active",
        "config",
        "failures",
        "last_frame_at",
        "last_heartbeat_at",
        "last_rtt",
        "max_silence",
        "next_send_at",
        "outstanding_since",
        "sent",
        "total_failures",
    )

    def __init__(self, config: HeartbeatConfig | None, max_silence: float | None = None) -> None:
        self.config = config
        self.max_silence = max_silence
        self.active = False
        self.last_frame_at = 0.0
        self.next_send_at: float | None = None
        self.outstanding_since: float | None = None
        self.last_heartbeat_at: float | None = None  # time.time() of the last reply
        self.last_rtt: float | None = None
        self.failures = 0
        self.total_failures = 0
        self.sent = 0

    @property
    def sends(self) -> bool:
        """Whether this heartbeat type sends anything periodically."""
        return self.config is not None and self.config.type in ("ping", "custom")

    @property
    def expects_reply(self) -> bool:
        """Whether an unanswered heartbeat means the peer is dead."""
        cfg = self.config
        return cfg is not None and (cfg.type == "ping" or (cfg.type == "custom" and cfg.expect is not None))

    def start(self, now: float) -> None:
        """A connection is up: start timing from ``now``."""
        self.active = True
        self.last_frame_at = now
        self.outstanding_since = None
        self.next_send_at = now + self.config.interval if self.sends and self.config else None

    def stop(self) -> None:
        """The connection is gone: nothing to time until :meth:`start`."""
        self.active = False
        self.next_send_at = None
        self.outstanding_since = None

    def on_sent(self, now: float) -> None:
        """A heartbeat went out at ``now``."""
        assert self.config is not None
        self.sent += 1
        self.next_send_at = now + self.config.interval
        if self.expects_reply and self.outstanding_since is None:
            self.outstanding_since = now

    def on_reply(self, now: float, wall: float | None = None) -> float | None:
        """A heartbeat reply (pong, expected reply, server heartbeat) arrived.

        Returns the round-trip time when a heartbeat of ours was waiting.
        """
        rtt = None
        if self.outstanding_since is not None:
            rtt = max(0.0, now - self.outstanding_since)
            self.last_rtt = rtt
            self.outstanding_since = None
        self.last_heartbeat_at = time.time() if wall is None else wall
        self.failures = 0
        return rtt

    def _deadlines(self) -> tuple[float | None, float | None, float | None]:
        """The ``dead_heartbeat``, ``dead_silence`` and ``send`` deadlines (None: not timed).

        A fixed-shape tuple, not a list of pairs: the shared timer thread asks
        for it twice per heartbeat of every client (measured: a third of the
        cost of the list version).
        """
        if not self.active:
            return None, None, None
        cfg = self.config
        dead: float | None = None
        send: float | None = None
        if cfg is not None:
            if cfg.type == "deribit":
                dead = self.last_frame_at + cfg.interval + (cfg.timeout or cfg.interval)
            else:
                send = self.next_send_at
                outstanding = self.outstanding_since
                if outstanding is not None:
                    # Any frame read after the heartbeat went out proves the
                    # peer is alive: a consumer that lags behind a busy feed
                    # must not mistake a queued pong for a dead peer.
                    since = outstanding if outstanding > self.last_frame_at else self.last_frame_at
                    dead = since + (cfg.timeout or cfg.interval)
        silence = None if self.max_silence is None else self.last_frame_at + self.max_silence
        return dead, silence, send

    def next_deadline(self) -> float | None:
        """Monotonic time at which :meth:`poll` has something to do, or None."""
        earliest: float | None = None
        for deadline in self._deadlines():
            if deadline is not None and (earliest is None or deadline < earliest):
                earliest = deadline
        return earliest

    def poll(self, now: float) -> Action | None:
        """What is due at ``now``: a death verdict wins over a send."""
        dead, silence, send = self._deadlines()
        if dead is not None and dead <= now:
            self.failures += 1
            self.total_failures += 1
            return "dead_heartbeat"
        if silence is not None and silence <= now:
            self.failures += 1
            self.total_failures += 1
            return "dead_silence"
        if send is not None and send <= now:
            return "send"
        return None

    def health(self) -> dict[str, Any]:
        """The dict behind ``client.get_heartbeat_health()``."""
        cfg = self.config
        return {
            "active": self.active and cfg is not None,
            "type": cfg.type if cfg else None,
            "interval": cfg.interval if cfg else None,
            "timeout": cfg.timeout if cfg else None,
            "last_heartbeat_at": self.last_heartbeat_at,
            "last_rtt": self.last_rtt,
            "failures": self.failures,
            "total_failures": self.total_failures,
            "sent": self.sent,
        }

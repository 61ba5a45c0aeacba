"""Timed actions in one named thread (``mock-ws-timer-<port>``).

They drive fault plans, timed stalls and the emulators' heartbeats and pings.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Timer"]

logger = logging.getLogger(__name__)


class Timer:
    """Handle on an action scheduled by :meth:`MockConnection.call_later` and friends."""

    def __init__(self, fn: Callable[[], None], interval: float | None) -> None:
        self.fn = fn
        self.interval = interval
        self.cancelled = False

    def cancel(self) -> None:
        """Stop the action from running (again). Idempotent."""
        self.cancelled = True


class _Scheduler:
    """Runs timed actions in one named thread; ``stop()`` wakes it at once.

    Actions must not block for long: closing a connection from an action goes
    through ``MockConnection.close(wait=False)``.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        # Guards _heap and _stopped.
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._stopped = False
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        # Daemon so a test that forgets stop() cannot hang interpreter exit.
        self.thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify_all()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(2.0)

    def call_later(self, delay: float, fn: Callable[[], None], interval: float | None = None) -> Timer:
        timer = Timer(fn, interval)
        with self._cond:
            if self._stopped:
                timer.cancelled = True
                return timer
            heapq.heappush(self._heap, (time.monotonic() + max(delay, 0.0), next(self._seq), timer))
            self._cond.notify_all()
        return timer

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    if not self._heap:
                        self._cond.wait()
                        continue
                    due, _, timer = self._heap[0]
                    remaining = due - time.monotonic()
                    if remaining > 0:
                        self._cond.wait(remaining)
                        continue
                    heapq.heappop(self._heap)
                    if not timer.cancelled:
                        break
            try:
                timer.fn()
            except Exception:
                logger.exception("mock server timer action failed")
            if timer.interval is not None and not timer.cancelled:
                with self._cond:
                    if not self._stopped:
                        heapq.heappush(self._heap, (due + timer.interval, next(self._seq), timer))

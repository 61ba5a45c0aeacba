"""One timer thread per process, shared by every client.

Heartbeats, request deadlines and dead-peer verdicts are only timers: they
need a thread to wake up at the right moment, not a thread each. A client
asks :func:`shared` for the process's :class:`Scheduler` while it is
connected and gives it back on close; the thread (``zen-ws-timer``) starts
with its first user and is joined when its last user leaves, so a process
with no open client has no timer thread at all.

Timer callbacks run on the timer thread, one after another: they must be
quick and must never block (the driver's heartbeat sends only when the
socket can take the frame at once; see ``connection.Link.try_send``). A
callback that raises is logged and the thread goes on.

Locking contract: ``_cond`` (and its lock) guards ``_heap``, ``_users``,
``_thread`` and ``_stopping``. Callbacks run without it held.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["TIMER_THREAD", "Scheduler", "Timer", "shared"]

logger = logging.getLogger(__name__)

#: The name of the shared timer thread.
TIMER_THREAD = "zen-ws-timer"


class Timer:
    """A pending call; :meth:`cancel` stops it if it has not run yet."""

    __slots__ = ("args", "cancelled", "fn", "when")

    def __init__(self, when: float, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        """Stop the call (a no-op once it ran). Safe from any thread."""
        self.cancelled = True

    def __repr__(self) -> str:
        return (
            f"Timer(when={self.when:.3f}, fn={getattr(self.fn, '__qualname__', self.fn)!r}, cancelled={self.cancelled})"
        )


class Scheduler:
    """A heap of timers served by one thread.

    Args:
        name: the thread's name.
        clock: a monotonic clock.
    """

    def __init__(self, name: str = TIMER_THREAD, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self._clock = clock
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._users = 0
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- users ------------------------------------------------------------

    def acquire(self) -> None:
        """A client starts using the scheduler; the thread starts with the first user."""
        with self._cond:
            self._users += 1
            if self._thread is None:
                self._stopping = False
                self._thread = threading.Thread(
                    target=self._run,
                    name=self.name,
                    # Daemon: a program that forgets close() must still exit;
                    # the atexit hook of the client closes clients first.
                    daemon=True,
                )
                self._thread.start()

    def release(self, timeout: float = 1.0) -> None:
        """A client is done; the last user stops and joins the thread (bounded by ``timeout``)."""
        with self._cond:
            self._users -= 1
            if self._users > 0 or self._thread is None:
                return
            thread = self._thread
            self._thread = None
            self._stopping = True
            self._heap.clear()
            self._cond.notify()
        if thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def users(self) -> int:
        """Clients holding the scheduler."""
        return self._users

    # -- timers -------------------------------------------------------------

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> Timer:
        """Run ``fn(*args)`` on the timer thread at monotonic time ``when``."""
        timer = Timer(when, fn, args)
        with self._cond:
            heap = self._heap
            heapq.heappush(heap, (when, next(self._seq), timer))
            if heap[0][2] is timer:
                self._cond.notify()  # earlier than what the thread sleeps towards
        return timer

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        """Run ``fn(*args)`` after ``delay`` seconds."""
        return self.call_at(self._clock() + delay, fn, *args)

    def __len__(self) -> int:
        """Timers in the heap (cancelled ones not yet dropped included)."""
        return len(self._heap)

    def _run(self) -> None:
        clock = self._clock
        cond = self._cond
        while True:
            with cond:
                while True:
                    if self._stopping:
                        return
                    heap = self._heap
                    while heap and heap[0][2].cancelled:
                        heapq.heappop(heap)
                    if not heap:
                        cond.wait()
                        continue
                    delay = heap[0][0] - clock()
                    if delay <= 0:
                        timer = heapq.heappop(heap)[2]
                        break
                    cond.wait(delay)
            if timer.cancelled:
                continue
            try:
                timer.fn(*timer.args)
            except Exception:
                logger.exception("timer %r raised", timer)


_shared_lock = threading.Lock()
_shared: Scheduler | None = None


def shared() -> Scheduler:
    """The process's scheduler (created on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Scheduler()
        return _shared

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

Timers run in batches: each wake-up runs every timer that is due, and the
thread then sleeps at least 20 µs per timer in the heap, at most
``resolution`` (20 ms): a timer may run that much late, never early. A few
clients keep sub-millisecond timing; 1,000 clients pinging every second
cost 50 wake-ups a second instead of 1,000 (each a futex wait, a context
switch and a GIL hand-over; measured with 1,000 clients: the timer
thread's CPU from 17% of a core to 11.5%, ping lateness p99 about 20 ms).

Locking contract: ``_lock`` guards ``_heap``, ``_users``, ``_thread``,
``_generation``, ``_wake``, ``_sleep_until`` and ``_waking``. Callbacks
run without it held. ``_wake`` (one per thread) is a lock used as a binary
semaphore: the timer thread sleeps in ``_wake.acquire(timeout=...)`` (a
wait in C, without ``threading.Condition``'s Python-level waiter list);
whoever must wake it releases it once, under ``_lock``, and ``_waking``
records that a release is outstanding so that it is never released twice.
A thread whose ``generation`` is no longer ``_generation`` (its last user
left) ends at its next look at the heap and touches nothing shared.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["RESOLUTION", "TIMER_THREAD", "Scheduler", "Timer", "shared"]

logger = logging.getLogger(__name__)

#: The name of the shared timer thread.
TIMER_THREAD = "zen-ws-timer"

#: The longest the timer thread waits after a batch before the next (seconds):
#: how late a timer may run under load.
RESOLUTION = 0.02

# The wait after a batch per timer in the heap: a busy scheduler batches
# more, an idle one stays precise.
_BATCH_WAIT_PER_TIMER = 20e-6


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
        resolution: the longest wait between two wake-ups of the thread
            after a batch (how late a timer may run under load); 0 wakes
            for every timer.
    """

    def __init__(
        self,
        name: str = TIMER_THREAD,
        clock: Callable[[], float] = time.monotonic,
        resolution: float = RESOLUTION,
    ) -> None:
        self.name = name
        self.resolution = resolution
        self._clock = clock
        self._lock = threading.Lock()
        # Each thread gets its own (see acquire): a thread left behind by a
        # release() that timed out can never take a wake-up meant for the next.
        self._wake = _held_lock()
        self._waking = False  # _wake was released and the thread has not taken it back yet
        # When the sleeping thread wakes on its own: -inf while it is awake
        # (it looks at the heap before sleeping again), inf with no timer.
        self._sleep_until = -math.inf
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._users = 0
        self._thread: threading.Thread | None = None
        self._generation = 0  # a thread left behind by a slow release() sees a newer one and ends

    # -- users ------------------------------------------------------------

    def acquire(self) -> None:
        """A client starts using the scheduler; the thread starts with the first user."""
        with self._lock:
            self._users += 1
            if self._thread is None:
                self._generation += 1
                self._wake = _held_lock()
                self._waking = False
                self._sleep_until = -math.inf
                self._thread = threading.Thread(
                    target=self._run,
                    args=(self._generation, self._wake),
                    name=self.name,
                    # Daemon: a program that forgets close() must still exit;
                    # the atexit hook of the client closes clients first.
                    daemon=True,
                )
                self._thread.start()

    def release(self, timeout: float = 1.0) -> None:
        """A client is done; the last user stops and joins the thread (bounded by ``timeout``)."""
        with self._lock:
            self._users -= 1
            if self._users > 0 or self._thread is None:
                return
            thread = self._thread
            self._thread = None
            self._generation += 1
            self._heap.clear()
            self._wake_thread()
        if thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def users(self) -> int:
        """Clients holding the scheduler."""
        return self._users

    # -- timers -------------------------------------------------------------

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> Timer:
        """Run ``fn(*args)`` on the timer thread at monotonic time ``when`` (late by at most ``resolution``)."""
        timer = Timer(when, fn, args)
        with self._lock:
            heapq.heappush(self._heap, (when, next(self._seq), timer))
            if when < self._sleep_until:
                self._wake_thread()  # earlier than what the thread sleeps towards
        return timer

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        """Run ``fn(*args)`` after ``delay`` seconds."""
        return self.call_at(self._clock() + delay, fn, *args)

    def __len__(self) -> int:
        """Timers in the heap (cancelled ones not yet dropped included)."""
        return len(self._heap)

    def _wake_thread(self) -> None:
        assert self._lock.locked()
        if not self._waking:
            self._waking = True
            self._wake.release()

    def _run(self, generation: int, wake: threading.Lock) -> None:
        clock = self._clock
        lock = self._lock
        heap = self._heap
        heappop = heapq.heappop
        max_wait = self.resolution
        not_before = -math.inf  # the thread's next wake-up on its own comes no earlier
        while True:
            due: list[Timer] = []
            with lock:
                if self._generation != generation:
                    return
                now = clock()
                while heap and (heap[0][0] <= now or heap[0][2].cancelled):
                    timer = heappop(heap)[2]
                    if not timer.cancelled:
                        due.append(timer)
                if not due:
                    until = max(heap[0][0], not_before) if heap else math.inf
                    self._sleep_until = until
            if due:
                not_before = now + min(max_wait, len(heap) * _BATCH_WAIT_PER_TIMER)
                for timer in due:
                    if self._generation != generation:
                        return  # the last user left during the batch: nothing more runs
                    if timer.cancelled:
                        continue  # by an earlier callback of the batch
                    try:
                        timer.fn(*timer.args)
                    except Exception:
                        logger.exception("timer %r raised", timer)
                continue
            if until == math.inf:
                woken = wake.acquire()
            else:
                woken = wake.acquire(timeout=min(max(0.0, until - clock()), threading.TIMEOUT_MAX))
            with lock:
                if self._generation != generation:
                    return
                self._sleep_until = -math.inf
                if self._waking:
                    if not woken:
                        # The release raced the timeout: take it back, so the
                        # next sleep is not cut short and the lock is held again.
                        wake.acquire(blocking=False)
                    self._waking = False


def _held_lock() -> threading.Lock:
    """A lock already acquired: the timer thread's next ``acquire`` on it sleeps until someone releases it."""
    lock = threading.Lock()
    lock.acquire()
    return lock


_shared_lock = threading.Lock()
_shared: Scheduler | None = None


def shared() -> Scheduler:
    """The process's scheduler (created on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Scheduler()
        return _shared

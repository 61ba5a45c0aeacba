"""The FIFO wait shared by :class:`.RateLimiter` and :class:`.MultiRateLimiter`.

Internal to the package: both limiters queue their waiting threads the same
way, so the queue is written once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["wait_in_line"]


def wait_in_line(owner: Any, take: Callable[[], float], timeout: float | None) -> bool:
    """Wait in ``owner``'s queue until ``take()`` succeeds or ``timeout`` runs out.

    The caller holds ``owner._lock``; ``owner`` also has ``_clock``,
    ``_waiters`` (a deque of conditions), ``_rejected`` and ``_waited``.
    ``take()`` takes the tokens and returns 0.0, or returns the seconds the
    refill still needs. Waiters are served in arrival order: the head sleeps
    for exactly that time, the others until the head leaves, so nobody
    busy-polls and a large request is not starved by a stream of small ones.

    Args:
        owner: the limiter whose queue to join.
        take: takes the tokens (0.0) or says how long the refill needs.
        timeout: the most seconds to wait; None for no limit.

    Returns:
        True once taken; False at once when the refill cannot make it within
        ``timeout``, or when a waiter behind the head reaches its deadline.
    """
    assert owner._lock.locked()
    if not owner._waiters and take() == 0.0:
        return True
    if timeout is not None and timeout <= 0:
        owner._rejected += 1
        return False
    clock = owner._clock
    started = now = clock()
    deadline = None if timeout is None else now + timeout
    ticket = threading.Condition(owner._lock)
    owner._waiters.append(ticket)
    try:
        while True:
            now = clock()
            wait: float | None
            if owner._waiters[0] is ticket:
                wait = take()
                if wait == 0.0:
                    return True
                if deadline is not None and now + wait > deadline:
                    owner._rejected += 1
                    return False
            elif deadline is None:
                wait = None  # sleep until the head leaves
            else:
                wait = deadline - now
                if wait <= 0:
                    owner._rejected += 1
                    return False
            ticket.wait(wait)
    finally:
        was_head = owner._waiters[0] is ticket
        owner._waiters.remove(ticket)
        if was_head and owner._waiters:
            owner._waiters[0].notify()
        owner._waited += max(0.0, now - started)

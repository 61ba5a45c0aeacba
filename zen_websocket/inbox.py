"""The user's inbox: the queue behind ``recv()`` and iteration, with its overflow policy.

Unbounded by default. With ``max_queue=N`` it holds at most N messages and
``overflow`` says what a full inbox does with the next one:
``"drop_oldest"`` (the default) drops the oldest queued message,
``"drop_newest"`` drops the new one, ``"block"`` makes the receive thread
wait for the consumer (bounded by ``close()``). Every drop is returned to the
caller, which counts it: nothing is dropped silently.

One producer (the receive thread), one consumer (``recv``, enforced by the
client).
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .connection import Latch

__all__ = ["CLOSED", "Inbox"]

#: Queue sentinel: the client is closed for good. Also what :meth:`Inbox.put`
#: returns when nothing was dropped.
CLOSED = object()


class Inbox:
    """A ``queue.SimpleQueue`` (put/get in C; a blocked ``get`` is interrupted by Ctrl-C) with a bound.

    Args:
        maxsize: the bound, or None for none.
        overflow: ``"drop_oldest"``, ``"drop_newest"`` or ``"block"``.
    """

    __slots__ = ("_q", "_slots", "maxsize", "overflow", "put_nowait")

    def __init__(self, maxsize: int | None, overflow: str) -> None:
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.maxsize = maxsize
        self.overflow = overflow
        # "block": the producer takes a slot per message, the consumer gives it back.
        self._slots = threading.Semaphore(maxsize) if maxsize and overflow == "block" else None
        #: The unbounded fast path: the receive thread puts straight into the queue.
        self.put_nowait = self._q.put if maxsize is None else None

    def put(self, item: Any, stopping: Latch) -> Any:
        """Queue ``item``; returns the message dropped for it, or :data:`CLOSED` if none was."""
        maxsize = self.maxsize
        if maxsize is None:
            self._q.put(item)
            return CLOSED
        if self._slots is not None:
            # Woken at least every 50 ms only while the inbox is full, so that
            # close() never waits on a consumer that stopped reading.
            while not self._slots.acquire(timeout=0.05):
                if stopping.is_set():
                    return item
            self._q.put(item)
            return CLOSED
        if self._q.qsize() < maxsize:
            self._q.put(item)
            return CLOSED
        if self.overflow == "drop_newest":
            return item
        try:
            dropped = self._q.get_nowait()
        except queue.Empty:
            dropped = CLOSED
        self._q.put(item)
        return dropped

    def get(self, timeout: float | None) -> Any:
        """The next item (:data:`CLOSED` once closed). Raises ``queue.Empty`` on timeout."""
        item = self._q.get(timeout=timeout)
        if self._slots is not None and item is not CLOSED:
            self._slots.release()
        return item

    def close(self) -> None:
        """Wake the consumer with :data:`CLOSED` after what is queued."""
        self._q.put(CLOSED)

    def empty(self) -> bool:
        """Whether no message is waiting."""
        return self._q.empty()

    def qsize(self) -> int:
        """Messages waiting."""
        return self._q.qsize()

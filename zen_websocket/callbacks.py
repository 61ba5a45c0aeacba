"""The event -> callbacks table shared by ``Client`` and ``ClientSupervisor``.

Copy-on-write: :meth:`CallbackTable.add` and :meth:`CallbackTable.remove`
replace the whole mapping under ``_lock``; readers (the receive thread, on
every message) call :meth:`CallbackTable.get` without locking and always see
a complete table.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["CallbackTable"]


class CallbackTable:
    """Callbacks by event name.

    Args:
        initial: callbacks to start with (e.g. the ``on_<event>=`` options).
    """

    def __init__(self, initial: Mapping[str, Sequence[Callable[..., Any]]] | None = None) -> None:
        self._lock = threading.Lock()  # guards replacing _table
        self._table: dict[str, tuple[Callable[..., Any], ...]] = {
            event: tuple(fns) for event, fns in (initial or {}).items() if fns
        }

    def get(self, event: str, default: tuple[Callable[..., Any], ...] = ()) -> tuple[Callable[..., Any], ...]:
        """The callbacks of ``event`` (lock-free read)."""
        return self._table.get(event, default)

    def add(self, event: str, fn: Callable[..., Any]) -> None:
        """Append ``fn`` to ``event``'s callbacks."""
        with self._lock:
            table = dict(self._table)
            table[event] = (*table.get(event, ()), fn)
            self._table = table

    def remove(self, event: str, fn: Callable[..., Any] | None = None) -> bool:
        """Remove ``fn`` (or every callback when None) from ``event``; True if any was removed."""
        with self._lock:
            table = dict(self._table)
            before = table.get(event, ())
            after = () if fn is None else tuple(f for f in before if f != fn)
            if after:
                table[event] = after
            else:
                table.pop(event, None)
            self._table = table
            return len(after) != len(before)

"""Session recording (``record_to=path``) and replay.

Every frame, both directions, becomes one JSON line::

    {"ts": "2026-11-26T08:00:00.123456+00:00", "dir": "in", "type": "text", "data": "..."}

``type`` is ``text``, ``binary`` (``data`` base64) or ``close`` (``data``
is ``{"code": ..., "reason": ...}``). The receive thread only appends a tuple
to a queue; a writer thread formats and writes, so recording stays off the
hot path. The file is flushed on ``close()`` and at interpreter exit.
"""

from __future__ import annotations

import base64
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

__all__ = ["Recorder", "iter_records", "metadata", "replay"]

_STOP = object()


class Recorder:
    """Appends frames to a JSONL file from a background writer thread."""

    def __init__(self, path: str, name: str = "recorder") -> None:
        self.path = path
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()  # guards _closed
        self._thread = threading.Thread(
            target=self._write_loop,
            name=f"zen-ws-recorder-{name}",
            # Daemon: close() (or the client's atexit hook) flushes and joins it.
            daemon=True,
        )
        self._thread.start()

    def record(self, direction: str, data: Any) -> None:
        """Queue one frame: ``direction`` is ``"in"``, ``"out"`` or ``"close"``."""
        self._queue.put((time.time(), direction, data))

    def _write_loop(self) -> None:
        write = self._file.write
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            ts, direction, data = item
            if direction == "close":
                kind, payload, direction = "close", data, "in"
            elif isinstance(data, (bytes, bytearray)):
                kind, payload = "binary", base64.b64encode(data).decode("ascii")
            else:
                kind, payload = "text", data
            stamp = datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds")
            write(json.dumps({"ts": stamp, "dir": direction, "type": kind, "data": payload}) + "\n")
            if self._queue.empty():
                self._file.flush()
        self._file.flush()

    def close(self) -> None:
        """Write what is queued, flush, close the file and join the writer."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP)
        if self._thread is not threading.current_thread():
            self._thread.join(5.0)
        self._file.close()


def iter_records(path: str) -> Iterator[dict[str, Any]]:
    """Yield the records of a recording, binary data decoded to bytes."""
    with open(path, encoding="utf-8") as file:
        for line in file:
            if not line.strip():
                continue
            record = json.loads(line)
            if record.get("type") == "binary":
                record["data"] = base64.b64decode(record["data"])
            yield record


def _parse_ts(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def replay(
    path: str,
    fn: Callable[[dict[str, Any]], Any],
    realtime: bool = False,
    speed: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Feed every record of ``path`` to ``fn``; returns how many.

    Args:
        realtime: keep the recorded gaps between frames (divided by ``speed``).
    """
    if speed <= 0:
        raise ValueError("speed must be positive")
    count = 0
    previous: float | None = None
    for record in iter_records(path):
        if realtime:
            ts = _parse_ts(record["ts"])
            if previous is not None and ts > previous:
                sleep((ts - previous) / speed)
            previous = ts
        fn(record)
        count += 1
    return count


def metadata(path: str) -> dict[str, Any]:
    """Counts per direction and type, duration, first and last timestamps."""
    counts: dict[str, int] = {}
    first = last = None
    total = 0
    for record in iter_records(path):
        total += 1
        key = f"{record['dir']}_{record['type']}"
        counts[key] = counts.get(key, 0) + 1
        first = first or record["ts"]
        last = record["ts"]
    duration = _parse_ts(last) - _parse_ts(first) if first and last else 0.0
    return {"count": total, "counts": counts, "first": first, "last": last, "duration": duration}

"""Session recording (``record_to=path``) and replay.

Every frame, both directions, becomes one JSON line::

    {"ts": "2026-11-26T08:00:00.123456+00:00", "dir": "in", "type": "text", "data": "..."}

``type`` is ``text``, ``binary`` (``data`` base64) or ``close`` (``data``
is ``{"code": ..., "reason": ...}``). The receive thread only appends a tuple
to a queue; a writer thread masks, formats and writes, so recording stays off
the hot path. The file is flushed whenever the queue runs empty and on
``close()``.

A recording holds a session's secrets unless they are hidden, so:

- secrets are masked before anything is written (:mod:`zen_websocket.redact`:
  ``client_secret``, tokens, signatures, API keys, OKX ``passphrase``/``sign``,
  Bybit ``auth`` args, ...), in text frames, in binary frames that are UTF-8
  text, and in close reasons; a masked file still replays (the masked values
  read ``"***"``);
- a new file is created readable by its owner only (mode 0600). An existing
  file is appended to and keeps its mode: widening or narrowing it is the
  owner's decision.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

from .errors import ConfigError
from .redact import redact_json, redact_text

__all__ = ["Recorder", "iter_records", "metadata", "replay"]

logger = logging.getLogger(__name__)

_STOP = object()

# Owner read/write only: a recording is a session transcript.
_FILE_MODE = 0o600


def _open_for_append(path: str) -> Any:
    """``path`` opened for appending text, created with mode 0600 if new.

    Raises:
        ConfigError: naming ``record_to`` when the file cannot be opened.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, _FILE_MODE)
    except (OSError, ValueError, TypeError) as exc:  # ValueError: a NUL in the path
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError("record_to", f"cannot open {path!r} for appending: {reason}") from exc
    return os.fdopen(fd, "a", encoding="utf-8")


def _entry(direction: str, data: Any) -> tuple[str, str, Any]:
    """(direction, type, masked data) of one recorded item."""
    if direction == "close":
        return "in", "close", redact_json(data)
    if isinstance(data, (bytes, bytearray)):
        # A binary frame that is UTF-8 text (JSON sent as bytes) can carry a
        # secret too; anything else (compressed, protobuf) is kept as it is.
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            payload = bytes(data)
        else:
            payload = redact_text(text).encode("utf-8")
        return direction, "binary", base64.b64encode(payload).decode("ascii")
    if isinstance(data, str):
        return direction, "text", redact_text(data)
    return direction, "text", redact_json(data)


def _format(ts: float, direction: str, data: Any) -> str:
    """One JSON line (with its newline) for a queued item."""
    direction, kind, payload = _entry(direction, data)
    stamp = datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds")
    return json.dumps({"ts": stamp, "dir": direction, "type": kind, "data": payload}) + "\n"


class Recorder:
    """Appends frames, secrets masked, to a JSONL file from a background writer thread.

    Args:
        path: the file; created with mode 0600 when it does not exist.
        name: the client's name, for the writer thread's name.

    Raises:
        ConfigError: naming ``record_to`` when ``path`` cannot be opened.
    """

    def __init__(self, path: str, name: str = "recorder") -> None:
        self.path = path
        self._file = _open_for_append(path)
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
        file = self._file
        failed = False
        while True:
            item = self._queue.get()
            if item is _STOP:
                break
            if failed:
                continue  # keep draining, so a full disk cannot grow the queue without bound
            try:
                line = _format(*item)
            except Exception:  # a value json cannot encode: lose that line, not the recording
                logger.exception("a frame could not be recorded to %s; skipped", self.path)
                continue
            try:
                file.write(line)
                if self._queue.empty():
                    file.flush()
            except (OSError, ValueError):  # ValueError: the file was closed under us
                # One line, with its traceback, then no more recording: the
                # session itself goes on (a recording must never break it).
                logger.exception("writing the recording %s failed; recording stopped", self.path)
                failed = True
        # What is still buffered is written by close(), which closes the file.

    def close(self) -> None:
        """Write what is queued, join the writer, then flush and close the file."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP)
        if self._thread is not threading.current_thread():
            self._thread.join(5.0)
        try:
            self._file.close()
        except OSError:
            logger.exception("closing the recording %s failed", self.path)


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

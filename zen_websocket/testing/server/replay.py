"""Recordings served back: the incoming frames of a ``record_to`` file, replayed to each client.

A session captured with ``record_to=path`` becomes a reproducible test: the
server sends every frame the client *received* in that session, in order,
to each client that connects, either at once or paced by the recorded
timestamps (divided by ``speed``). Frames the client sent are not played
(they are the client's part; the test's client sends its own). Each
connection is served from a thread of its own, ``mock-ws-replay-<id>``, so
the server still reads (and records) what the client sends meanwhile.

Example::

    with MockWebSocketServer(replay="session.jsonl") as server:
        ...  # a client connecting to server.url receives the recorded messages
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any

from ...recorder import _parse_ts, iter_records
from .connection import MockConnection
from .messages import _check_close_code
from .serving import _Serving

# Internal to the package: nothing here is public API (MockWebSocketServer is).
__all__: list[str] = []


@dataclass(frozen=True)
class _Frame:
    """One incoming frame of a recording: a message (``data``) or, with ``close`` set, the server's close."""

    at: float  # seconds since the recording's first incoming frame
    data: str | bytes | None = None
    close: tuple[int | None, str] | None = None


def load_frames(path: str, *, closes: bool = False) -> list[_Frame]:
    """The incoming frames of the recording at ``path``, in order.

    Args:
        closes: keep the close frames the client received (dropped by
            default: a recording also ends with the echo of the client's own
            close, which is not the server's doing).

    Raises:
        OSError: the file cannot be read.
        ValueError: a line is not a recording record.
    """
    frames: list[_Frame] = []
    first: float | None = None
    for record in iter_records(path):
        if record.get("dir") != "in":
            continue
        kind = record.get("type")
        stamp = _parse_ts(record["ts"])
        first = stamp if first is None else first
        if kind in ("text", "binary"):
            frames.append(_Frame(max(0.0, stamp - first), data=record["data"]))
        elif kind == "close" and closes:
            data = record.get("data") or {}
            frames.append(_Frame(max(0.0, stamp - first), close=(data.get("code"), str(data.get("reason") or ""))))
    return frames


class _Replay(_Serving):
    """The replay part of :class:`MockWebSocketServer`: ``replay=``, ``realtime=``, ``speed=``, :meth:`serve_recording`."""

    def __init__(
        self,
        *args: Any,
        replay: str | None = None,
        realtime: bool = False,
        speed: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._replay: tuple[list[_Frame], bool, float] | None = None  # frames, realtime, speed
        if replay is not None:
            self.serve_recording(replay, realtime=realtime, speed=speed)

    def serve_recording(self, path: str, *, realtime: bool = False, speed: float = 1.0, closes: bool = False) -> int:
        """Serve the incoming frames of a ``record_to`` file to every connection opened from now on.

        Args:
            path: the recording (JSON lines, see :mod:`zen_websocket.recorder`).
            realtime: keep the recorded gaps between frames; otherwise send
                them all at once.
            speed: with ``realtime``, divides the gaps (2.0 plays twice as fast).
            closes: also close the connection where the recording shows a
                close frame from the server, with its code.

        Returns:
            The number of frames each connection will be sent.

        Raises:
            ValueError: ``speed`` is not positive, or the file is not a recording.
            OSError: the file cannot be read.
        """
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed!r}")
        frames = load_frames(path, closes=closes)
        self._replay = (frames, realtime, float(speed))
        return len(frames)

    def connection_opened(self, conn: MockConnection) -> None:
        super().connection_opened(conn)
        replay = self._replay
        if replay is not None and replay[0]:
            self._spawn(f"mock-ws-replay-{conn.id}", functools.partial(self._play, conn, *replay))

    def _play(self, conn: MockConnection, frames: list[_Frame], realtime: bool, speed: float) -> None:
        """A replay thread: send the frames on ``conn`` until done, the connection closes or the server stops."""
        started = time.monotonic()
        for frame in frames:
            if realtime and not self._wait_until(conn, started + frame.at / speed):
                return
            if frame.close is not None:
                code, reason = frame.close
                if code is not None and _sendable(code):
                    conn.close(code, reason)
                else:
                    conn.drop()  # no code, or one no endpoint may send (1005, 1006): the TCP goes instead
                return
            assert frame.data is not None
            conn.send(frame.data)  # ConnectionClosed ends the thread (see _spawn)

    def _wait_until(self, conn: MockConnection, due: float) -> bool:
        """Wait until ``due`` (monotonic); False if the connection closed or the server stopped first."""

        def over() -> bool:
            return self._state != "running" or not conn.is_open

        with self._cond:  # notified on stop and whenever a connection ends
            while not over():
                remaining = due - time.monotonic()
                if remaining <= 0:
                    return True
                self._cond.wait(min(remaining, 0.05))
        return False


def _sendable(code: int) -> bool:
    try:
        _check_close_code(code)
    except ValueError:
        return False
    return True

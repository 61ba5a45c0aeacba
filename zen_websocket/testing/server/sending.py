"""Sending to clients: one message or ping now, or numbered feeds from a thread (``mock-ws-stream-<n>``)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from websockets.exceptions import ConnectionClosed

from .core import _ServerCore
from .messages import encode_message

__all__ = ["StreamHandle"]

logger = logging.getLogger(__name__)


class StreamHandle:
    """A running feed started by :meth:`MockWebSocketServer.start_stream` or an emulator.

    Attributes:
        sent: Number of messages sent so far.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent = 0
        self._stop = threading.Event()
        self.thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the feed thread is alive."""
        return self.thread is not None and self.thread.is_alive()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the feed and join its thread. Idempotent."""
        self._stop.set()
        on_stop = getattr(self, "_on_stop", None)
        if on_stop is not None:
            on_stop()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)


class _Sending(_ServerCore):
    """Messages, pings and feeds that :class:`MockWebSocketServer` sends to its clients."""

    def inject_message(self, data: Any) -> int:
        """Send ``data`` to every open connection (dict/list as JSON text).

        Returns:
            The number of connections it was sent to.
        """
        message = encode_message(data)
        sent = 0
        for conn in self.connections:
            try:
                conn.send(message)
                sent += 1
            except ConnectionClosed:
                pass
        return sent

    def ping_all(self, payload: bytes | str | None = None) -> int:
        """Send a ping to every open connection; returns how many got one.

        Args:
            payload: Ping payload; ``None`` uses four random bytes per ping
                (a fixed payload cannot be reused before its pong arrives).
        """
        sent = 0
        for conn in self.connections:
            try:
                conn.ping(payload)
                sent += 1
            except ConnectionClosed:
                pass
        return sent

    def start_stream(
        self,
        make_message: Callable[[int], Any],
        interval: float,
        count: int | None = None,
    ) -> StreamHandle:
        """Send numbered messages to every open connection from a background thread.

        Each connection gets ``make_message(1)``, ``make_message(2)``... (its
        own numbering, from its opening), one every ``interval`` seconds
        (0: as fast as possible), up to ``count`` messages per connection.
        A ``None`` message is skipped. Stopped by :meth:`StreamHandle.stop` or :meth:`stop`.

        Example::

            stream = server.start_stream(lambda seq: {"seq": seq}, interval=0.01, count=100)
        """
        counters: dict[int, int] = {}
        handle = self._new_stream()

        def wake() -> None:
            with self._cond:
                self._cond.notify_all()

        handle._on_stop = wake  # type: ignore[attr-defined]

        def tick() -> None:
            while not handle._stop.is_set():
                sent_any = False
                for conn in self.connections:
                    seq = counters.get(conn.id, 0) + 1
                    if count is not None and seq > count:
                        continue
                    counters[conn.id] = seq
                    message = make_message(seq)
                    if message is None:
                        continue
                    try:
                        conn.send(message)
                    except ConnectionClosed:
                        continue
                    handle.sent += 1
                    sent_any = True
                if not sent_any:
                    # Idle until a connection opens (or the stream stops).
                    with self._cond:
                        generation = self._generation

                        def changed(generation: int = generation) -> bool:
                            return handle._stop.is_set() or self._generation != generation or self._state != "running"

                        self._cond.wait_for(changed)
                    if self._state != "running":
                        return
                    continue
                if interval > 0:
                    handle._stop.wait(interval)

        self._start_stream_thread(handle, tick)
        return handle

    def start_feed(self, tick: Callable[[int], Any], interval: float, count: int | None = None) -> StreamHandle:
        """Call ``tick(seq)`` (seq from 1) every ``interval`` seconds from a background thread.

        Unlike :meth:`start_stream`, numbering is global: the emulators use it
        to publish numbered updates to whoever is subscribed at the time.
        """
        if interval <= 0 and count is None:
            raise ValueError("an endless feed needs interval > 0")
        handle = self._new_stream()

        def run() -> None:
            seq = 0
            while not handle._stop.is_set() and (count is None or seq < count):
                seq += 1
                tick(seq)
                handle.sent += 1
                if interval > 0:
                    handle._stop.wait(interval)

        self._start_stream_thread(handle, run)
        return handle

    def _new_stream(self) -> StreamHandle:
        with self._cond:
            if self._state != "running":
                raise RuntimeError("server not running")
            handle = StreamHandle(f"mock-ws-stream-{len(self._streams) + 1}")
            self._streams.append(handle)
        return handle

    def _start_stream_thread(self, handle: StreamHandle, target: Callable[[], None]) -> None:
        def run() -> None:
            try:
                target()
            except Exception:
                logger.exception("mock server stream %s failed", handle.name)

        # Daemon so a forgotten stop() cannot hang interpreter exit; stop() joins it.
        handle.thread = threading.Thread(target=run, name=handle.name, daemon=True)
        handle.thread.start()

"""A subscription feed with per-connection sequence numbers, for loss checks.

:class:`SequencedFeed` answers Deribit-style ``public/subscribe`` requests and
streams, on every connection, ``subscription`` notifications for the channels
that connection subscribed, numbered 1, 2, 3... per connection::

    {"jsonrpc": "2.0", "method": "subscription",
     "params": {"channel": "ticker.BTC", "data": {"conn": 3, "seq": 17}}}

So a consumer can prove it lost nothing: within each ``conn`` the ``seq``
values it saw must be 1..k without a gap (:func:`gaps`), and ``k`` can be
compared with :attr:`SequencedFeed.sent`. Combined with the fault injection
of :class:`MockWebSocketServer`, this is the basis of chaos and soak tests::

    with SequencedFeed(interval=0.005) as feed:
        client = zw.connect(feed.url, on_message=collect)
        client.subscribe(["ticker.BTC"])
        feed.drop_connections()
        ...
        assert gaps(collected_by_conn) == {}
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from .server import MockConnection, MockWebSocketServer, StreamHandle

__all__ = ["FeedCollector", "SequencedFeed", "gaps"]


class SequencedFeed(MockWebSocketServer):
    """A :class:`MockWebSocketServer` streaming numbered notifications per connection.

    Args:
        interval: seconds between two rounds of notifications (one per
            subscribed channel per connection).
        **kwargs: passed to :class:`MockWebSocketServer`.

    Attributes:
        sent: connection id -> the last ``seq`` sent on it.
        subscribes: connection id -> ``(time.monotonic(), channels)`` of each
            subscribe request, in order.
    """

    def __init__(self, interval: float = 0.005, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.interval = interval
        self.sent: dict[int, int] = defaultdict(int)
        self.subscribes: dict[int, list[tuple[float, list[str]]]] = defaultdict(list)
        self._feed_lock = threading.Lock()  # guards sent, subscribes and each session's channels
        self._feed: StreamHandle | None = None

    def start(self) -> SequencedFeed:
        super().start()
        self._feed = self.start_feed(self._tick, self.interval)
        return self

    def stop_feed(self) -> None:
        """Stop streaming (the server keeps running)."""
        if self._feed is not None:
            self._feed.stop()

    def stop(self) -> None:
        self.stop_feed()
        super().stop()

    def channels(self, conn_id: int) -> set[str]:
        """Every channel subscribed on connection ``conn_id``."""
        with self._feed_lock:
            return {c for _, channels in self.subscribes.get(conn_id, ()) for c in channels}

    def restored_at(self, conn_id: int, channels: Iterable[str]) -> float | None:
        """``time.monotonic()`` when ``channels`` were all subscribed on ``conn_id``, or None."""
        wanted = set(channels)
        seen: set[str] = set()
        with self._feed_lock:
            for at, subscribed in self.subscribes.get(conn_id, ()):
                seen.update(subscribed)
                if seen >= wanted:
                    return at
        return None

    def message_received(self, conn: MockConnection, message: Any) -> Any:
        reply = super().message_received(conn, message)
        if reply is not None or not isinstance(message, str):
            return reply
        try:
            request = json.loads(message)
        except ValueError:
            return None
        if not isinstance(request, dict) or request.get("method") != "public/subscribe":
            return None
        channels = list(request.get("params", {}).get("channels", []))
        with self._feed_lock:
            self.subscribes[conn.id].append((time.monotonic(), channels))
            known = conn.session.setdefault("channels", [])
            known.extend(c for c in channels if c not in known)
        return {"jsonrpc": "2.0", "id": request.get("id"), "result": channels}

    def _tick(self, _round: int) -> None:
        for conn in self.connections:
            with self._feed_lock:
                channels = list(conn.session.get("channels", ()))
            for channel in channels:
                with self._feed_lock:
                    seq = self.sent[conn.id] + 1
                message = {
                    "jsonrpc": "2.0",
                    "method": "subscription",
                    "params": {"channel": channel, "data": {"conn": conn.id, "seq": seq}},
                }
                try:
                    conn.send(message)
                except Exception:
                    break  # closed or dropped: this connection's stream ends here
                with self._feed_lock:
                    self.sent[conn.id] = seq


def gaps(seqs_by_conn: Mapping[int, list[int]]) -> dict[int, list[int]]:
    """Connections whose sequence is not exactly 1..k, with what was seen."""
    return {conn: seqs for conn, seqs in seqs_by_conn.items() if seqs != list(range(1, len(seqs) + 1))}


class FeedCollector:
    """A ``message`` callback that collects a :class:`SequencedFeed`'s numbers by connection.

    Use it as ``on_message=collector`` (on a client or a supervised child),
    then check ``gaps(collector.snapshot()) == {}``. Thread-safe: callbacks
    of several clients may call it at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards by_conn
        self.by_conn: dict[int, list[int]] = defaultdict(list)

    def __call__(self, client: Any, message: str) -> None:
        data = json.loads(message).get("params", {}).get("data", {})
        if "conn" in data:
            with self._lock:
                self.by_conn[data["conn"]].append(data["seq"])

    def count(self, conn: int) -> int:
        """How many numbers arrived from connection ``conn``."""
        with self._lock:
            return len(self.by_conn.get(conn, ()))

    def snapshot(self) -> dict[int, list[int]]:
        """A copy of what arrived, by connection."""
        with self._lock:
            return {conn: list(seqs) for conn, seqs in self.by_conn.items()}

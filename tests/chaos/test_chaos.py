"""Chaos: faults injected while a subscribed feed streams numbered messages.

A loopback :class:`SequencedFeed` answers Deribit-style
``public/subscribe`` requests and, on every connection, streams
``{"method": "subscription", "params": {"channel": ch, "data": {"conn": id, "seq": n}}}``
for the subscribed channels only, ``seq`` counting 1, 2, 3... per connection
(across its channels). Faults (TCP drop, half-open stall, close codes,
refused connections, an HTTP 503) hit the client again and again; after
each the client must reconnect, restore its subscriptions and go on.

Invariants checked after every scenario:

* the client ends ``connected``;
* every server connection received a ``public/subscribe`` carrying all the
  channels (the first from ``subscribe()``, the others from the restore);
* per connection the client saw seqs ``1, 2, ..., k`` exactly (in order, no
  gap, no duplicate): only the tail of a connection, in flight when it died,
  may be missing. A connection closed with a close handshake loses nothing;
* no ``error`` event, no ERROR log line, no uncaught thread exception;
* ``reconnects`` == ``reconnect`` events == server connections - 1, and
  ``messages_received`` == messages delivered + acknowledgements consumed;
* no thread or file descriptor is left behind.

Every wait is on a condition with a generous bound, never a bare sleep.
"""

from __future__ import annotations

import gc
import itertools
import json
import logging
import os
import random
import threading
import time
from collections import defaultdict
from typing import Any

import pytest

import zen_websocket as zw
from tests.timeunit import ms
from zen_websocket import telemetry
from zen_websocket.testing import SequencedFeed, gaps

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(60)]

CHANNELS = ["ticker.BTC-PERPETUAL.100ms", "trades.ETH-PERPETUAL.100ms"]
HB_INTERVAL = ms(100)
HB_TIMEOUT = ms(150)
OPTIONS: dict[str, Any] = {
    "heartbeat_config": {"type": "ping", "interval": HB_INTERVAL, "timeout": HB_TIMEOUT},
    "retry_delay": ms(10),
    "max_backoff": ms(160),
    "jitter": 0.2,
    "retry_count": None,
    "timeout": 2.0,
    "close_timeout": ms(500),
    "request_timeout": 10.0,
}
WAIT = 15.0  # bound on any single wait: generous for a loaded 2-core machine
STALL = ms(2000)  # how long a stalled server connection stays half-open

_ids = itertools.count(1)


def wait_until(predicate, what: str, timeout: float = WAIT, step: float = 0.003) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def fd_count() -> int:
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


class FeedServer:
    """The loopback server (a SequencedFeed) and the views the assertions need."""

    def __init__(self, interval: float = ms(3)) -> None:
        self.server = SequencedFeed(interval=interval, close_timeout=ms(500))
        self.sent = self.server.sent
        self.subscribes = self.server.subscribes

    def __enter__(self) -> FeedServer:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    def stop_feed(self) -> None:
        self.server.stop_feed()

    # -- views
    def newest(self):
        conns = self.server.all_connections
        return conns[-1] if conns else None

    def restored(self, conn_id: int) -> bool:
        return self.server.channels(conn_id) >= set(CHANNELS)


class Collector:
    """What the client delivered: per connection id, the seqs in arrival order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_conn: dict[int, list[int]] = defaultdict(list)
        self.wrong_channel: list[Any] = []
        self.other: list[Any] = []
        self.delivered = 0

    def add(self, raw: Any) -> None:
        message = json.loads(raw)
        with self.lock:
            self.delivered += 1
            if message.get("method") != "subscription":
                self.other.append(message)
                return
            params = message["params"]
            if params["channel"] not in CHANNELS:
                self.wrong_channel.append(message)
            data = params["data"]
            self.by_conn[data["conn"]].append(data["seq"])

    def count(self, conn_id: int) -> int:
        with self.lock:
            return len(self.by_conn.get(conn_id, ()))

    def snapshot(self) -> dict[int, list[int]]:
        with self.lock:
            return {k: list(v) for k, v in self.by_conn.items()}


class Harness:
    """One client against one FeedServer, in callback or recv() mode, with full bookkeeping."""

    def __init__(self, feed: FeedServer, mode: str, **overrides: Any) -> None:
        self.feed = feed
        self.server = feed.server
        self.mode = mode
        self.collector = Collector()
        self.lock = threading.Lock()
        self.events: list[tuple[str, Any]] = []
        self.telemetry: list[tuple[tuple[str, ...], dict[str, Any], float]] = []
        self.name = f"chaos-{next(_ids)}"
        self.handler_id = f"tests.chaos.{self.name}"
        telemetry.attach_many(
            self.handler_id,
            [
                ("zen_websocket", "reconnect", "attempt"),
                ("zen_websocket", "reconnect", "success"),
                ("zen_websocket", "reconnect", "give_up"),
                ("zen_websocket", "request", "stop"),
                ("zen_websocket", "heartbeat", "failure"),
                ("zen_websocket", "client", "disconnect"),
            ],
            self._on_telemetry,
        )
        options = dict(OPTIONS, name=self.name, **overrides)
        for event in ("connect", "disconnect", "reconnect", "error", "close"):
            options[f"on_{event}"] = self._recorder(event)
        if mode == "callback":
            options["on_message"] = lambda client, data: self.collector.add(data)
        self.consumer: threading.Thread | None = None
        self.consumer_error: list[BaseException] = []
        self.client = zw.connect(self.server.url, **options)
        if mode == "recv":
            self.consumer = threading.Thread(target=self._consume, name="chaos-consumer", daemon=True)
            self.consumer.start()
        try:
            self.client.subscribe(CHANNELS, wait=True, timeout=WAIT)
        except BaseException:
            self.close()
            raise

    def _recorder(self, event: str):
        def record(client, *args):
            with self.lock:
                self.events.append((event, args))

        return record

    def _on_telemetry(self, event, measurements, metadata, _config) -> None:
        if metadata.get("name") == self.name:
            with self.lock:
                self.telemetry.append((event, dict(measurements), time.monotonic()))

    def _consume(self) -> None:
        try:
            for raw in self.client:
                self.collector.add(raw)
        except BaseException as exc:  # surfaces in the final checks
            self.consumer_error.append(exc)

    # -- views
    def count(self, event: str) -> int:
        with self.lock:
            return sum(1 for name, _ in self.events if name == event)

    def args(self, event: str) -> list[tuple[Any, ...]]:
        with self.lock:
            return [args for name, args in self.events if name == event]

    def telemetry_count(self, *event: str) -> int:
        key = ("zen_websocket", *event)
        with self.lock:
            return sum(1 for name, _, _ in self.telemetry if name == key)

    # -- driving
    def wait_healthy(self, after_conn: int, messages: int = 5) -> int:
        """Wait for a server connection newer than ``after_conn``, restored, streaming to the client."""

        def ok() -> bool:
            conn = self.feed.newest()
            return (
                conn is not None
                and conn.id > after_conn
                and conn.is_open
                and self.feed.restored(conn.id)
                and self.collector.count(conn.id) >= messages
                and self.client.get_state() == "connected"
            )

        wait_until(ok, f"a restored, streaming connection after #{after_conn}")
        return self.feed.newest().id

    def inject(self, fault: str) -> None:
        """Apply one fault to the current connection and, for outages, bring the server back."""
        server = self.server
        if fault == "drop":
            server.drop_connections()
        elif fault == "drop_rst":
            server.drop_connections(rst=True)
        elif fault == "stall":
            server.stall(STALL)  # the client must find out by itself, through heartbeats
        elif fault.startswith("close_"):
            server.simulate_disconnect(int(fault.split("_")[1]), "chaos")
        elif fault == "refuse":
            attempts = self.telemetry_count("reconnect", "attempt")
            server.refuse_connections(True)
            server.drop_connections()
            # At least two refused attempts (an attempt event precedes each sleep).
            wait_until(
                lambda: self.telemetry_count("reconnect", "attempt") >= attempts + 3,
                "reconnect attempts against a refusing server",
            )
            server.refuse_connections(False)
        elif fault == "reject_503":
            rejected = server.rejected_count
            server.reject_handshake(503, times=1)
            server.drop_connections()
            wait_until(lambda: server.rejected_count > rejected, "the 503 rejection")
        else:
            raise ValueError(fault)

    def run(self, faults: list[str]) -> None:
        current = self.wait_healthy(0)
        for fault in faults:
            self.inject(fault)
            current = self.wait_healthy(current)

    # -- final checks
    def finish_and_check(self, *, min_reconnects: int) -> None:
        client, server, feed, col = self.client, self.server, self.feed, self.collector
        assert client.get_state() == "connected"
        # Quiesce: stop the feed, then let the live connection deliver everything it was sent.
        feed.stop_feed()
        last = feed.newest()
        wait_until(lambda: col.count(last.id) == feed.sent[last.id], "the live connection to deliver its stream")
        wait_until(lambda: client.get_state_metrics()["queue_size"] == 0, "the queue to drain")
        metrics = client.get_state_metrics()

        conns = server.all_connections
        ids = [c.id for c in conns]
        # Subscriptions restored on every connection, with every channel.
        for conn_id in ids:
            assert feed.restored(conn_id), f"connection #{conn_id} never got the subscriptions: {feed.subscribes}"
        # Per connection: 1..k in order, none lost or repeated; nothing from nowhere.
        got = col.snapshot()
        assert set(got) <= set(ids)
        assert gaps(got) == {}, "gap or disorder inside a connection"
        for conn_id in ids:
            seqs = got.get(conn_id, [])
            assert len(seqs) <= feed.sent[conn_id]
            assert seqs, f"connection #{conn_id} delivered nothing"
        # A close handshake loses nothing: everything sent before the close frame arrives.
        for conn in conns:
            if conn.close_code in (1000, 1001, 1011) and conn.id != last.id:
                assert len(got[conn.id]) == feed.sent[conn.id], (
                    f"connection #{conn.id} closed cleanly but lost messages"
                )
        assert not col.wrong_channel and not col.other

        # Events and metrics agree with what happened.
        reconnects = self.count("reconnect")
        assert reconnects >= min_reconnects
        assert metrics["reconnects"] == reconnects == len(conns) - 1 == server.connection_count - 1
        assert self.telemetry_count("reconnect", "success") == reconnects
        assert self.telemetry_count("reconnect", "give_up") == 0
        assert self.count("disconnect") == reconnects
        assert self.count("connect") == len(conns)
        assert self.count("close") == 0
        assert self.args("error") == [], f"unexpected error events: {self.args('error')}"
        consumed = self.telemetry_count("request", "stop")  # subscribe acknowledgements
        assert metrics["messages_received"] == col.delivered + consumed
        assert metrics["subscriptions"] == len(CHANNELS)
        assert metrics["dropped_messages"] == 0
        assert sorted(client.subscriptions) == sorted(CHANNELS)
        assert not self.consumer_error

    def close(self) -> None:
        try:
            self.client.close()
            if self.consumer is not None:
                self.consumer.join(5.0)
                assert not self.consumer.is_alive()
                assert not self.consumer_error or isinstance(self.consumer_error[0], zw.ConnectionClosed)
        finally:
            telemetry.detach(self.handler_id)


@pytest.fixture
def no_leaks():
    """No thread, no file descriptor, no uncaught thread exception, no ERROR log from the library."""
    threads_before = set(threading.enumerate())
    fds_before = fd_count()
    uncaught: list[Any] = []
    old_hook = threading.excepthook
    threading.excepthook = lambda args: uncaught.append(args)
    errors: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors.append(record)

    catcher = Catch(logging.ERROR)
    library = logging.getLogger("zen_websocket")
    library.addHandler(catcher)
    try:
        yield
    finally:
        library.removeHandler(catcher)
        threading.excepthook = old_hook

    def leftovers() -> list[str]:
        return sorted(t.name for t in set(threading.enumerate()) - threads_before if t.is_alive())

    wait_until(lambda: not leftovers(), "threads to end", timeout=10.0, step=0.02)
    assert not uncaught, [f"{a.thread}: {a.exc_type.__name__}: {a.exc_value}" for a in uncaught]
    assert not errors, [f"{r.name}: {r.getMessage()}" for r in errors]
    # A little slack for descriptors owned by the interpreter or pytest.
    wait_until(lambda: fd_count() <= fds_before + 2, "file descriptors to be released", timeout=5.0, step=0.05)


FAULTS = ["drop", "drop_rst", "stall", "close_1001", "close_1011", "close_1000", "refuse", "reject_503"]


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_alone_recovers(fault, no_leaks):
    with FeedServer() as feed:
        harness = Harness(feed, "callback")
        try:
            harness.run([fault, fault])
            harness.finish_and_check(min_reconnects=2)
            if fault == "stall":
                reasons = [args[0] for args in harness.args("disconnect")]
                assert reasons.count("heartbeat_timeout") >= 2, reasons
                assert harness.telemetry_count("heartbeat", "failure") >= 2
            if fault == "reject_503":
                assert feed.server.rejected_count == 2
            if fault == "refuse":
                # Backoff grew while refused, and the successful attempt ended the sequence.
                attempts = [m["attempt"] for e, m, _ in harness.telemetry if e[-1] == "attempt"]
                assert max(attempts) >= 3
        finally:
            harness.close()


@pytest.mark.parametrize("mode", ["callback", "recv"])
def test_mixed_faults_long_run(mode, no_leaks):
    rng = random.Random(20240611)
    faults = FAULTS * 5
    rng.shuffle(faults)
    with FeedServer() as feed:
        harness = Harness(feed, mode)
        try:
            harness.run(faults)
            harness.finish_and_check(min_reconnects=len(faults))
            reasons = [args[0] for args in harness.args("disconnect")]
            assert reasons.count("heartbeat_timeout") >= faults.count("stall")
            for code in (1000, 1001, 1011):
                assert reasons.count(f"remote_close:{code}") >= faults.count(f"close_{code}")
        finally:
            harness.close()


def test_planned_faults_per_connection(no_leaks):
    """The server's per-connection fault plan, run back to back without the test stepping in."""
    after = ms(400)  # long enough for the restore and some stream on each connection
    with FeedServer() as feed:
        harness = Harness(feed, "recv")
        try:
            first = harness.wait_healthy(0)
            feed.server.plan(
                [
                    ("close", 1011, after),
                    ("reject", 503),
                    ("stall", after, STALL),
                    ("refuse", ms(150)),
                    ("drop", after),
                    ("close", 1001, after),
                    None,
                ]
            )
            feed.server.drop_connections()
            wait_until(lambda: feed.server.plan_remaining == 0, "the plan to be used up", timeout=30.0)
            harness.wait_healthy(first + 4)
            assert feed.server.connection_count == 6  # first + close, stall, drop, close, normal
            harness.finish_and_check(min_reconnects=5)
        finally:
            harness.close()


def test_close_during_outage_is_prompt_and_clean(no_leaks):
    """close() while the client is retrying against a refusing server ends everything at once."""
    with FeedServer() as feed:
        harness = Harness(feed, "recv")
        try:
            harness.wait_healthy(0)
            feed.server.refuse_connections(True)
            feed.server.drop_connections()
            wait_until(lambda: harness.telemetry_count("reconnect", "attempt") >= 3, "retries")
            assert harness.client.get_state() == "connecting"
        finally:
            started = time.monotonic()
            harness.close()
            assert time.monotonic() - started < 2.0
        assert harness.client.get_state() == "disconnected"
        assert harness.count("close") == 1
        assert harness.args("error") == []


def test_peer_stalled_during_restore_is_detected_and_channels_kept(no_leaks):
    """A peer that goes half-open right after the handshake (before acknowledging the restore)."""
    with FeedServer() as feed:
        stalled = {2}
        feed.server.on_connect = lambda conn: conn.stall(STALL) if conn.id in stalled else None
        harness = Harness(feed, "callback", request_timeout=ms(1000))
        try:
            harness.wait_healthy(0)
            started = time.monotonic()
            feed.server.drop_connections()
            wait_until(lambda: feed.server.connection_count >= 3, "the stalled connection to be given up")
            # Dead-peer detection should take interval + timeout, not request_timeout.
            assert time.monotonic() - started < ms(900)
            harness.wait_healthy(2, messages=1)
            assert sorted(harness.client.subscriptions) == sorted(CHANNELS)
            assert harness.args("error") == []
        finally:
            harness.close()

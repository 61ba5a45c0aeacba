"""A hostile peer after the upgrade: it stops reading, floods, breaks framing (F2, F6, F7, F8).

Also what already held up and must keep holding: malformed frames are
closed with the right code, and connect/close cycles leave no thread behind.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import pytest

import zen_websocket as zw
from tests.hostile.rawserver import (
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    EventLog,
    RawConn,
    Serve,
    frame_bytes,
    run_client_process,
    zw_threads,
)
from tests.timeunit import ms, wait_until

MB = 1024 * 1024
MARGIN = ms(300)


def _close_code(payload: bytes) -> int | None:
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None


def _is_text(expected: str) -> Callable[[int, bytes], bool]:
    """A frame predicate: the text frame ``expected``."""
    return lambda opcode, payload: opcode == OP_TEXT and payload == expected.encode()


# -- F2: a peer that stops reading ----------------------------------------------


class StuckWriter(threading.Thread):
    """Sends 64 KiB messages until a send fails; a peer that reads nothing makes one block."""

    def __init__(self, client: zw.Client) -> None:
        super().__init__(name="hostile-writer", daemon=True)  # daemon: a failed test must not hang exit
        self.client = client
        self.call_started: float | None = None  # monotonic start of the send in progress (or the last)
        self.error: BaseException | None = None
        self.failed_at: float | None = None
        self.sent = 0

    def run(self) -> None:
        payload = "x" * 65536
        while True:
            self.call_started = time.monotonic()
            try:
                self.client.send_message(payload)
            except BaseException as exc:  # the test judges what the stuck send raised
                self.failed_at = time.monotonic()
                self.error = exc
                return
            self.sent += 1

    def stuck_for(self) -> float:
        """How long the send in progress has been blocked (0 when none is or it has failed)."""
        started = self.call_started
        if started is None or self.error is not None:
            return 0.0
        return time.monotonic() - started


def _stop_reading_after_upgrade(conn: RawConn) -> None:
    conn.accept_upgrade()
    conn.stop_reading()  # reads nothing, answers no ping, holds TCP open


def test_f2_a_peer_that_stops_reading_is_declared_dead_and_the_stuck_send_released(
    serve: Serve, events: EventLog
) -> None:
    """Heartbeat or write timeout ends a connection whose peer stopped reading, even with a writer stuck."""
    server = serve(_stop_reading_after_upgrade)
    client = zw.connect(
        server.url,
        heartbeat_config={"type": "ping", "interval": ms(100), "timeout": ms(200)},
        write_timeout=ms(500),
        close_timeout=ms(300),
        retry_count=0,
        **events.options(),
    )
    connected_at = time.monotonic()
    writer = StuckWriter(client)
    writer.start()
    try:
        assert events.wait("disconnect", timeout=3.0), "the client never noticed the dead peer"
        disconnected_at = events.first_time("disconnect")
        assert disconnected_at is not None
        (reason,) = events.of("disconnect")[0]
        assert reason == "heartbeat_timeout" or "write" in reason
        # (a) out of "connected" within one heartbeat interval + timeout (+ margin)
        assert disconnected_at - connected_at <= ms(100) + ms(200) + MARGIN
        # (b) the blocked send fails with NotConnectedError within write_timeout (+ margin)
        writer.join(ms(500) + MARGIN)
        assert not writer.is_alive(), "send_message() is still blocked"
        assert isinstance(writer.error, zw.NotConnectedError)
        assert writer.failed_at is not None and writer.call_started is not None
        assert writer.failed_at - writer.call_started <= ms(500) + MARGIN
        # ...and that send really was stuck (not refused at once), and ended with the connection
        assert writer.failed_at - writer.call_started >= ms(100)
        assert writer.failed_at <= disconnected_at + MARGIN
    finally:
        # (c) close() is bounded
        started = time.monotonic()
        client.close()
        closed_after = time.monotonic() - started
        server.stop()
        writer.join(5)
    assert closed_after <= ms(300) + MARGIN


def test_f2_max_silence_ends_a_connection_whose_writer_is_stuck(serve: Serve, events: EventLog) -> None:
    """Without a heartbeat, ``max_silence`` still ends a connection to a silent peer while a send is blocked."""
    server = serve(_stop_reading_after_upgrade)
    client = zw.connect(
        server.url,
        heartbeat_config=None,
        max_silence=ms(300),
        close_timeout=ms(300),
        retry_count=0,
        **events.options(),
    )
    connected_at = time.monotonic()
    writer = StuckWriter(client)
    writer.start()
    try:
        assert events.wait("disconnect", timeout=3.0), "max_silence never fired"
        disconnected_at = events.first_time("disconnect")
        assert disconnected_at is not None
        assert events.of("disconnect")[0] == ("max_silence",)
        assert disconnected_at - connected_at <= ms(300) + MARGIN
        writer.join(MARGIN)
        assert not writer.is_alive(), "send_message() is still blocked after the connection ended"
        assert isinstance(writer.error, zw.NotConnectedError)
        assert writer.failed_at is not None and writer.call_started is not None
        assert writer.failed_at - writer.call_started >= ms(100)  # that send really was stuck
    finally:
        client.close()
        server.stop()
        writer.join(5)


def test_f2_close_returns_in_time_while_a_send_is_stuck(serve: Serve) -> None:
    """close() with a send blocked on a peer that reads nothing returns within close_timeout and frees the sender."""
    server = serve(_stop_reading_after_upgrade)
    client = zw.connect(server.url, heartbeat_config=None, close_timeout=ms(300), retry_count=0)
    writer = StuckWriter(client)
    writer.start()
    try:
        assert wait_until(lambda: writer.stuck_for() > ms(100), timeout=3.0), "no send ever blocked"
        started = time.monotonic()
        client.close()
        assert time.monotonic() - started <= ms(300) + MARGIN
        writer.join(MARGIN)
        assert not writer.is_alive(), "send_message() is still blocked after close()"
        assert isinstance(writer.error, zw.NotConnectedError)
        assert not zw_threads()
    finally:
        client.close()
        server.stop()
        writer.join(5)


# -- F6: a flood of empty continuation frames -------------------------------------

FRAGMENTS = 4_000_000  # far over any sane cap on frames per message (the default is 2**20)

_FLOOD_CLIENT = """
closed = threading.Event()
messages, closes, errors = [], [], []
def on_close(client, code, reason):
    closes.append([code, reason])
    closed.set()
client = zw.Client(
    url,
    heartbeat_config=None,
    on_message=lambda client, data: messages.append(len(data)),
    on_error=lambda client, exc: errors.append(type(exc).__name__),
    on_close=on_close,
)
client.connect()
deadline = time.monotonic() + budget
# Until the client gives up on the message, or has read the whole flood
# without doing so (then it is not going to), or the budget is spent.
while not closed.wait(0.02) and time.monotonic() < deadline:
    if client.get_state_metrics()["bytes_received"] >= flood_bytes:
        closed.wait(0.5)
        break
result.update(
    state=str(client.get_state()), closes=closes, messages=messages, errors=errors,
    bytes_received=client.get_state_metrics()["bytes_received"],
)
client.close()
"""


def test_f6_empty_continuation_flood_is_refused_with_1009_in_bounded_memory(serve: Serve) -> None:
    """4,000,000 empty continuation frames: the client closes with 1009, delivers nothing, grows < 30 MB."""
    client_close: list[int | None] = []
    got_close = threading.Event()

    def flood(conn: RawConn) -> None:
        conn.accept_upgrade()
        conn.start_reader()  # the client's close frame may come while we are still writing
        try:
            conn.send_frame(OP_TEXT, b"a", fin=False)
            empty = frame_bytes(OP_CONT, b"", fin=False)
            batch = empty * 500_000  # 1 MB per write
            for _ in range(FRAGMENTS // 500_000):
                conn.send_raw(batch)
            conn.send_frame(OP_CONT, b"b", fin=True)
        except OSError:
            pass  # the client hung up mid-flood
        frame = conn.wait_frame(lambda opcode, _: opcode == OP_CLOSE, timeout=10.0)
        if frame is not None:
            client_close.append(_close_code(frame[1]))
            got_close.set()
            try:
                conn.send_frame(OP_CLOSE, frame[1])
            except OSError:
                pass
        conn.close_tcp()

    server = serve(flood)
    flood_bytes = 3 + 2 * FRAGMENTS + 3
    report = run_client_process(_FLOOD_CLIENT, timeout=30.0, url=server.url, budget=10.0, flood_bytes=flood_bytes)
    assert report.result["messages"] == [], "the flooded message was delivered"
    assert got_close.wait(ms(1000)), f"the client never closed: {report.result}"
    assert client_close == [1009]
    assert report.result["state"] == "disconnected"
    assert report.result["closes"] and report.result["closes"][0][0] == 1009
    assert server.connection_count == 1  # fatal: no reconnect
    assert report.rss_growth < 30 * MB


# -- F7: a flood of Deribit test_request heartbeats --------------------------------


def test_f7_test_request_flood_keeps_at_most_one_public_test_in_flight(serve: Serve) -> None:
    """50,000 ``test_request``s never answered: one ``public/test`` in flight, not 50,000 pending requests."""
    flood_size = 50_000

    def deribit(conn: RawConn) -> None:
        conn.accept_upgrade()
        request = conn.recv_json()
        assert request["method"] == "public/set_heartbeat"
        conn.send_json({"jsonrpc": "2.0", "id": request["id"], "result": "ok"})
        conn.start_reader()  # counts the client's public/test while we flood
        notification = json.dumps({"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request"}})
        frame = frame_bytes(OP_TEXT, notification.encode())
        conn.send_raw(frame * flood_size)
        conn.send_json({"marker": "flood read"})  # in order: once the client has it, it has read the flood
        conn.finish()

    server = serve(deribit)
    client = zw.connect(server.url, heartbeat_config={"type": "deribit", "interval": 10}, close_timeout=ms(300))
    try:
        assert client.recv_json(timeout=20.0) == {"marker": "flood read"}
        assert client.get_state_metrics()["pending_requests"] <= 2
        assert client.get_state() == "connected"
        client.send_message("sync")  # TCP is ordered: every public/test was written before it
        conn = server.conn(0)
        assert conn.wait_frame(_is_text("sync")) is not None, "the connection is not up any more"
        tests = [p for _, op, p in conn.frames if op == OP_TEXT and b'"public/test"' in p]
        assert 1 <= len(tests) <= 2, f"{len(tests)} public/test requests for {flood_size} test_requests"
    finally:
        client.close()


# -- F8: a flood of pings -----------------------------------------------------------


def test_f8_ping_flood_pongs_stay_within_the_rate_budget(serve: Serve) -> None:
    """10,000 pings: pongs beyond the limiter's budget are skipped, and the user's send still goes out at once."""
    flood_started: list[float] = []

    def pinger(conn: RawConn) -> None:
        conn.accept_upgrade()
        conn.start_reader()
        flood_started.append(time.monotonic())
        conn.send_raw(frame_bytes(OP_PING, b"p") * 10_000)
        conn.send_text("flood sent")
        conn.finish()

    server = serve(pinger)
    client = zw.connect(server.url, heartbeat_config=None, rate_limiter=zw.RateLimiter(5, 1.0), close_timeout=ms(300))
    sender_error: list[BaseException] = []

    def send_after() -> None:
        try:
            client.send_message("after")
        except BaseException as exc:  # reported below; the sender thread must end either way
            sender_error.append(exc)

    sender = threading.Thread(target=send_after, name="hostile-sender", daemon=True)
    try:
        assert client.recv(timeout=10.0) == "flood sent"
        sender.start()
        conn = server.conn(0)
        after = conn.wait_frame(_is_text("after"), timeout=ms(1500))
        assert after is not None, "send_message('after') was held back by the pong flood"
        elapsed = time.monotonic() - flood_started[0]
        pongs = sum(1 for _, op, _ in conn.frames if op == OP_PONG)
        assert pongs <= 5 + 5 * elapsed + 2, f"{pongs} pongs in {elapsed:.2f}s"
    finally:
        client.close()
        sender.join(5)
    assert not sender_error


# -- malformed frames: closed with the right code -------------------------------------


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        pytest.param(frame_bytes(OP_TEXT, b"hi", mask=True), 1002, id="masked-server-frame"),
        pytest.param(frame_bytes(OP_TEXT, b"caf\xc3("), 1007, id="invalid-utf8-text"),
        pytest.param(frame_bytes(OP_PING, b"x" * 126), 1002, id="126-byte-ping"),
    ],
)
def test_malformed_frame_is_closed_with_its_code(serve: Serve, events: EventLog, frame: bytes, code: int) -> None:
    """A protocol violation by the server is answered with a close frame carrying the RFC 6455 code; fatal."""
    codes: list[int | None] = []
    closed = threading.Event()

    def script(conn: RawConn) -> None:
        conn.accept_upgrade()
        conn.send_raw(frame)
        _, payload = conn.recv_until(lambda opcode, _: opcode == OP_CLOSE)
        codes.append(_close_code(payload))
        closed.set()
        conn.send_frame(OP_CLOSE, payload)
        conn.close_tcp()

    server = serve(script)
    client = zw.connect(server.url, heartbeat_config=None, close_timeout=ms(300), **events.options())
    try:
        assert closed.wait(5), f"the client sent no close frame: {server.errors}"
        assert codes == [code]
        assert events.wait("close")
        assert client.get_state() == "disconnected"
        assert isinstance(events.of("error")[0][0], zw.ProtocolError)
        assert server.connection_count == 1
    finally:
        client.close()


def test_two_hundred_connect_close_cycles_leave_no_thread_behind(serve: Serve) -> None:
    """200 connect/close cycles against a polite peer: every thread the client started is gone after each close."""

    def polite(conn: RawConn) -> None:
        conn.accept_upgrade()
        _, payload = conn.recv_until(lambda opcode, _: opcode == OP_CLOSE)
        conn.send_frame(OP_CLOSE, payload)
        conn.close_tcp()

    server = serve(polite)
    before = {t for t in threading.enumerate() if not t.name.startswith("hostile-")}
    for _ in range(200):
        client = zw.connect(server.url, heartbeat_config=None, close_timeout=ms(300))
        client.close()
        assert not zw_threads(), [t.name for t in zw_threads()]
    after = {t for t in threading.enumerate() if not t.name.startswith("hostile-") and t.is_alive()}
    assert after <= before, sorted(t.name for t in after - before)
    assert server.connection_count == 200

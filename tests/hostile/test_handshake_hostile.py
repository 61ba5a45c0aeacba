"""A hostile server during the opening handshake: redirects, trickles, floods, hangs (F1, F3, F4).

Every server here stops misbehaving after a few seconds at most, so that a
client without the protection fails its test quickly instead of hanging the run.
"""

from __future__ import annotations

import threading
import time

import pytest

import zen_websocket as zw
from tests.hostile.rawserver import RawConn, Script, Serve, run_client_process, zw_threads
from tests.timeunit import ms, wait_until

MB = 1024 * 1024
# Slack on every timing bound: threads must be scheduled and sockets shut down.
MARGIN = ms(300)


def _answer_then_hold(response: bytes) -> Script:
    """A server that reads the request, writes ``response`` and holds the connection."""

    def script(conn: RawConn) -> None:
        conn.read_request()
        conn.send_raw(response)
        conn.wait_for_stop()

    return script


def _stream_for(conn: RawConn, head: bytes, filler: bytes, seconds: float, tail: bytes = b"") -> None:
    """Write ``head``, then ``filler`` repeatedly for at most ``seconds``, then ``tail`` and close TCP.

    Bounded so that a client that keeps reading (today's behaviour) still ends.
    """
    conn.read_request()
    deadline = time.monotonic() + seconds
    try:
        conn.send_raw(head)
        while time.monotonic() < deadline and not conn.wait_for_stop(0):
            conn.send_raw(filler)
        conn.send_raw(tail)
    except OSError:
        return  # the client hung up: what we want
    conn.close_tcp()


# -- F1: redirects and non-upgrade answers -------------------------------------


def test_f1_redirect_is_fatal_names_the_target_and_is_never_followed(serve: Serve) -> None:
    """A 301 is a fatal ConnectError naming the target; the target is never contacted, the token never shown."""
    target = serve(lambda conn: conn.close_tcp())  # only counts who connects
    location = f"ws://127.0.0.1:{target.port}/"
    server = serve(
        _answer_then_hold(
            f"HTTP/1.1 301 Moved Permanently\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
        )
    )
    with pytest.raises(zw.ConnectError) as info:
        zw.connect(
            server.url,
            headers={"Authorization": "Bearer s3cr3t"},
            retry_count=2,
            retry_delay=ms(10),
            timeout=ms(1000),
            heartbeat_config=None,
        )
    exc = info.value
    assert exc.reason == "redirect"
    assert exc.status_code == 301
    assert exc.attempts == 1  # fatal: no retry
    assert f"127.0.0.1:{target.port}" in str(exc)
    assert "s3cr3t" not in str(exc)
    assert target.connection_count == 0
    assert server.connection_count == 1


def test_f1_a_200_answer_is_fatal_not_websocket(serve: Serve) -> None:
    """A plain 200 OK (not an upgrade) means the URL is no WebSocket endpoint: fatal at the first attempt."""
    server = serve(_answer_then_hold(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 2\r\n\r\nok"))
    with pytest.raises(zw.ConnectError) as info:
        zw.connect(server.url, retry_count=2, retry_delay=ms(10), timeout=ms(1000), heartbeat_config=None)
    assert info.value.reason == "not_websocket"
    assert info.value.attempts == 1
    assert server.connection_count == 1


# -- F3: the handshake is bounded in time and memory ---------------------------


def test_f3_a_trickled_upgrade_fails_at_the_connect_deadline(serve: Serve) -> None:
    """``timeout`` bounds the whole attempt: a 101 trickled 1 byte / 50 ms cannot stretch it."""

    def trickle(conn: RawConn) -> None:
        conn.read_request()
        # 30 bytes = 1.5 s of trickle, then TCP closes: a client that waits
        # for the whole answer fails this test in bounded time.
        conn.trickle(conn.accept_response()[:30], ms(50))
        conn.close_tcp()

    server = serve(trickle)
    started = time.monotonic()
    with pytest.raises(zw.ConnectError) as info:
        zw.connect(server.url, timeout=ms(400), retry_count=0, heartbeat_config=None)
    elapsed = time.monotonic() - started
    assert info.value.reason == "timeout"
    assert elapsed < ms(400) + MARGIN


_CONNECT_ONCE = """
started = time.monotonic()
try:
    zw.connect(url, timeout=5.0, retry_count=0, heartbeat_config=None)
    result["error"] = None
except zw.ConnectError as exc:
    result.update(error="ConnectError", reason=exc.reason, status_code=exc.status_code, length=len(str(exc)))
result["elapsed"] = time.monotonic() - started
"""


def test_f3_b_a_403_with_a_64_mib_body_fails_fast_in_bounded_memory(serve: Serve) -> None:
    """A refusal promising 64 MiB of body is reported at once (403) without reading the body into memory."""
    server = serve(
        lambda conn: _stream_for(
            conn,
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 67108864\r\n\r\n",
            b"x" * 65536,
            seconds=3.0,
        )
    )
    report = run_client_process(_CONNECT_ONCE, url=server.url)
    assert report.result["error"] == "ConnectError"
    assert report.result["status_code"] == 403
    assert report.result["elapsed"] < ms(1000)
    assert report.rss_growth < 20 * MB


def test_f3_c_an_8_mb_header_line_is_a_bad_handshake_in_bounded_memory(serve: Serve) -> None:
    """One 8 MB header line is refused as ``bad_handshake`` quickly, without buffering it."""
    server = serve(
        lambda conn: _stream_for(
            conn,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Filler: ",
            b"a" * 65536,
            seconds=3.0,  # 8 MB at loopback speed takes far less; the cap only bounds a slow reader
            tail=b"\r\n\r\n",
        )
    )
    report = run_client_process(_CONNECT_ONCE, url=server.url)
    assert report.result["error"] == "ConnectError"
    assert report.result["reason"] == "bad_handshake"
    assert report.result["elapsed"] < ms(1000)
    assert report.rss_growth < 20 * MB


# -- F4: close() aborts a handshake in progress ---------------------------------


def _hang_after_request(conn: RawConn) -> None:
    conn.read_request()
    conn.stop_reading()  # never answers the upgrade


def test_f4_close_aborts_a_first_connect_whose_handshake_hangs(serve: Serve) -> None:
    """close() during a hanging handshake makes connect() raise within close_timeout and leaves no thread."""
    server = serve(_hang_after_request)
    client = zw.Client(server.url, timeout=10, close_timeout=ms(300), heartbeat_config=None)
    raised: list[BaseException] = []
    ended_at: list[float] = []

    def run() -> None:
        try:
            client.connect()
        except BaseException as exc:  # the test inspects whatever connect() raised
            raised.append(exc)
        ended_at.append(time.monotonic())

    connector = threading.Thread(target=run, name="hostile-connector", daemon=True)
    connector.start()
    try:
        assert server.conn(0).request_seen.wait(5)
        started = time.monotonic()
        client.close()
        closed_after = time.monotonic() - started
        connector.join(ms(300) + MARGIN)
        assert not connector.is_alive(), "connect() still hangs after close()"
        assert len(raised) == 1 and isinstance(raised[0], zw.ConnectError), raised
        assert ended_at[0] - started <= ms(300) + MARGIN
        assert closed_after <= ms(300) + MARGIN
        assert wait_until(lambda: not zw_threads(), timeout=0.3), [t.name for t in zw_threads()]
    finally:
        server.stop()  # unblocks a connect() that ignored close()
        connector.join(5)


def test_f4_close_aborts_a_reconnect_whose_handshake_hangs(serve: Serve) -> None:
    """close() while a reconnect's handshake hangs returns within close_timeout and stops every thread."""

    def drop_then_hang(conn: RawConn) -> None:
        if conn.index == 0:
            conn.accept_upgrade()
            conn.close_tcp()  # no close frame: the client reconnects
        else:
            _hang_after_request(conn)

    server = serve(drop_then_hang)
    client = zw.connect(server.url, timeout=10, retry_delay=ms(10), close_timeout=ms(300), heartbeat_config=None)
    try:
        assert server.conn(1).request_seen.wait(5)
        started = time.monotonic()
        client.close()
        assert time.monotonic() - started <= ms(300) + MARGIN
        assert wait_until(lambda: not zw_threads(), timeout=0.3), [t.name for t in zw_threads()]
        assert client.get_state() == "disconnected"
    finally:
        server.stop()  # unblocks a handshake that ignored close()

"""MockWebSocketServer against real clients on loopback (websockets and websocket-client)."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import ssl
import threading
import time

import pytest
import websocket  # websocket-client
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidMessage, InvalidStatus
from websockets.sync.client import connect

from tests.timeunit import ms
from zen_websocket.testing import MockWebSocketServer
from zen_websocket.testing.server import encode_message, message_matches


def mock_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("mock-ws-")]


@pytest.fixture(autouse=True)
def no_mock_threads_left():
    """Every test here must leave no mock-ws- thread behind once its servers stopped."""
    yield
    deadline = time.monotonic() + 2.0
    while mock_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert mock_threads() == []


@pytest.fixture
def server():
    with MockWebSocketServer() as srv:
        yield srv


@pytest.fixture
def echo_server():
    with MockWebSocketServer(echo=True) as srv:
        yield srv


def assert_refused(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


# ------------------------------------------------------------------ basics


def test_url_and_echo_of_text_and_binary(echo_server):
    """url is ws://127.0.0.1:<port>, and echo=True sends every message back unchanged."""
    assert echo_server.url == f"ws://127.0.0.1:{echo_server.port}"
    assert echo_server.port > 0
    with connect(echo_server.url) as ws:
        ws.send("hello")
        assert ws.recv(timeout=1) == "hello"
        ws.send(b"\x00\x01")
        assert ws.recv(timeout=1) == b"\x00\x01"


def test_received_is_ordered_typed_and_clearable(server):
    """received lists text as str and binary as bytes, in order; clear_received empties it."""
    with connect(server.url) as ws:
        for i in range(5):
            ws.send(f"m{i}")
        ws.send(b"bin")
        assert server.wait_for(lambda: len(server.received) == 6)
        assert server.received == ["m0", "m1", "m2", "m3", "m4", b"bin"]
        assert server.connections[0].received == server.received
        server.clear_received()
        assert server.received == []
        assert server.connections[0].received == []


def test_stop_is_idempotent_closes_clients_and_listener():
    """stop() sends 1001 to clients, closes the listening socket and joins its threads."""
    server = MockWebSocketServer().start()
    port = server.port
    with connect(server.url) as ws:
        assert server.wait_for_connections(1)
        assert mock_threads(), "the server runs named threads"
        server.stop()
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=1)
        assert ws.close_code == 1001
    server.stop()
    assert mock_threads() == []
    assert_refused(port)
    with pytest.raises(RuntimeError):
        server.start()


def test_stop_is_bounded_with_a_stalled_server_and_silent_client():
    """stop() finishes quickly even when the connection is stalled and the client never answers."""
    server = MockWebSocketServer(close_timeout=ms(200), stop_timeout=ms(300)).start()
    raw = websocket.create_connection(server.url, timeout=1)
    try:
        assert server.wait_for_connections(1)
        server.stall(None)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1.5
        assert mock_threads() == []
    finally:
        raw.close(timeout=0)


def test_stop_is_bounded_with_a_hung_handshake_and_a_silent_tcp_client():
    """A client stuck in the handshake, or one that never sends its request, does not block stop()."""
    server = MockWebSocketServer(stop_timeout=ms(300)).start()
    server.hang_handshake()
    silent = socket.create_connection(("127.0.0.1", server.port))
    outcome: list[BaseException | None] = []

    def hung_client() -> None:
        try:
            _connect_once(server.url, 1.5)
            outcome.append(None)
        except (InvalidMessage, ConnectionClosed, OSError) as exc:
            outcome.append(exc)

    hung = threading.Thread(target=hung_client)
    hung.start()
    try:
        assert server.wait_for(lambda: server.attempt_count == 2)
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 1.5
    finally:
        hung.join()
        silent.close()
    # Released by stop(), the hung client is reset rather than left to time out.
    assert len(outcome) == 1 and outcome[0] is not None


def _connect_once(url: str, timeout: float) -> None:
    with connect(url, open_timeout=timeout):
        pass


def test_constructor_options_ipv6_url_and_not_started_errors():
    """port/url need a started server; an IPv6 host is bracketed in the url."""
    server = MockWebSocketServer()
    with pytest.raises(RuntimeError):
        _ = server.port
    with pytest.raises(RuntimeError):
        server.client_ssl_context()
    assert "new" in repr(server)
    server.stop()  # stopping a never-started server is harmless


# ------------------------------------------------------------------ TLS


def test_tls_with_client_ssl_context_and_ca_file():
    """tls=True serves wss:// with a throwaway CA, trusted via client_ssl_context() or ca_pem_path."""
    with MockWebSocketServer(tls=True, echo=True) as server:
        assert server.url.startswith("wss://127.0.0.1:")
        assert isinstance(server.ssl_context, ssl.SSLContext)
        ctx = server.client_ssl_context()
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        with connect(server.url, ssl=ctx) as ws:
            ws.send("secure")
            assert ws.recv(timeout=1) == "secure"
        assert server.ca_pem_path is not None
        ca_path = server.ca_pem_path
        assert os.path.exists(ca_path)
        raw = websocket.create_connection(server.url, sslopt={"ca_certs": ca_path}, timeout=1)
        raw.send("via websocket-client")
        assert raw.recv() == "via websocket-client"
        raw.close()
        # A client that does not trust the throwaway CA fails verification.
        with pytest.raises(ssl.SSLCertVerificationError):
            _connect_with_default_trust(server.url)
    assert not os.path.exists(ca_path)


def _connect_with_default_trust(url: str) -> None:
    with connect(url, ssl=ssl.create_default_context(), open_timeout=1):
        pass


def test_tls_survives_refuse_and_relisten():
    """After refuse_connections(False) the re-created listener still speaks TLS."""
    with MockWebSocketServer(tls=True, echo=True) as server:
        server.refuse_connections()
        server.refuse_connections(False)
        with connect(server.url, ssl=server.client_ssl_context()) as ws:
            ws.send("again")
            assert ws.recv(timeout=1) == "again"


# ------------------------------------------------------------------ handshake records


def test_handshake_headers_paths_and_subprotocol():
    """handshake_headers/paths record each accepted upgrade; the first shared subprotocol is selected."""
    with MockWebSocketServer(subprotocols=["v2.json", "v1.json"]) as server:
        with connect(
            server.url + "/feed?x=1",
            additional_headers={"X-Api-Key": "k1"},
            subprotocols=["v1.json", "v2.json"],
        ) as ws:
            assert ws.subprotocol == "v2.json"
            assert server.wait_for_connections(1)
            conn = server.connections[0]
            assert conn.subprotocol == "v2.json"
            assert conn.path == "/feed?x=1"
            assert conn.remote_address[0] == "127.0.0.1"
        # A client offering no subprotocol still connects, without one.
        with connect(server.url) as ws:
            assert ws.subprotocol is None
        assert server.connection_count == 2
        assert server.handshake_paths == ["/feed?x=1", "/"]
        first = server.handshake_headers[0]
        assert first["X-Api-Key"] == "k1"
        assert first["Sec-WebSocket-Protocol"] == "v1.json, v2.json"
        assert "Sec-WebSocket-Protocol" not in server.handshake_headers[1]


# ------------------------------------------------------------------ sending


def test_inject_message_json_encodes_and_counts_connections(server):
    """inject_message sends to every open connection (dict as JSON) and returns how many."""
    with connect(server.url) as a, connect(server.url) as b:
        assert server.wait_for_connections(2)
        assert server.inject_message({"type": "update", "seq": 1}) == 2
        assert json.loads(a.recv(timeout=1)) == {"type": "update", "seq": 1}
        assert json.loads(b.recv(timeout=1)) == {"type": "update", "seq": 1}
        assert server.inject_message(b"raw") == 2
        assert a.recv(timeout=1) == b"raw"
    assert server.wait_for(lambda: not server.connections)
    assert server.inject_message("nobody") == 0


def test_encode_message_rejects_other_types():
    """Only str, bytes, dict and list can be sent."""
    assert encode_message([1, 2]) == "[1,2]"
    assert encode_message(bytearray(b"x")) == b"x"
    with pytest.raises(TypeError):
        encode_message(42)


def test_ping_all_and_recorded_pings_and_pongs(server):
    """ping_all pings clients (their pongs are recorded); client pings are recorded and answered."""
    with connect(server.url) as ws:
        assert server.wait_for_connections(1)
        assert server.ping_all(b"srv") == 1
        # websockets answers pings while a recv() is in progress.
        with pytest.raises(TimeoutError):
            ws.recv(timeout=ms(50))
        assert server.wait_for(lambda: server.pongs_received == [b"srv"])
        pong = ws.ping(b"cli")
        assert pong.wait(1), "the server answers client pings by default"
        # websockets answers before it reports the frame: wait for the record.
        assert server.wait_for(lambda: server.pings_received == [b"cli"])
        assert server.connections[0].pings_received == [b"cli"]


def test_server_never_pings_by_default(server):
    """The server has no keepalive of its own: no ping unless asked."""
    raw = websocket.create_connection(server.url, timeout=ms(300))
    try:
        with pytest.raises(websocket.WebSocketTimeoutException):
            raw.recv_data_frame(control_frame=True)
    finally:
        raw.close()


def test_no_message_size_limit_by_default(server):
    """max_size=None: a 3 MiB message is received whole."""
    big = "x" * (3 * 1024 * 1024)
    with connect(server.url) as ws:
        ws.send(big)
        assert server.assert_message_sent(big, timeout=2) == big


def test_max_size_closes_with_1009():
    """With max_size set, a larger message closes the connection with 1009."""
    with MockWebSocketServer(max_size=1000) as server, connect(server.url) as ws:
        ws.send("x" * 2000)
        with pytest.raises(ConnectionClosedError):
            ws.recv(timeout=1)
        assert ws.close_code == 1009


# ------------------------------------------------------------------ disconnects


def test_simulate_disconnect_sends_code_and_reason(server):
    """simulate_disconnect performs a close handshake with the given code and reason."""
    with connect(server.url) as ws:
        assert server.wait_for_connections(1)
        assert server.simulate_disconnect(4001, "maintenance") == 1
        with pytest.raises(ConnectionClosed) as info:
            ws.recv(timeout=1)
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (4001, "maintenance")
    assert server.wait_for(lambda: not server.connections)


@pytest.mark.parametrize("code", [1005, 1006, 1015, 999, 2000, 5000])
def test_simulate_disconnect_rejects_unsendable_codes(server, code):
    """Codes that cannot appear in a close frame raise ValueError at once."""
    with pytest.raises(ValueError):
        server.simulate_disconnect(code)


def test_drop_connections_closes_tcp_without_close_frame(server):
    """drop_connections: the client sees the TCP connection end without a close frame (1006)."""
    with connect(server.url) as ws:
        assert server.wait_for_connections(1)
        assert server.drop_connections() == 1
        with pytest.raises(ConnectionClosedError) as info:
            ws.recv(timeout=1)
        assert info.value.rcvd is None
        assert ws.close_code == 1006
    assert server.connections == []
    assert server.all_connections[0].close_code == 1006


def test_drop_connections_rst_resets_the_peer(server):
    """drop_connections(rst=True) resets TCP: a raw reader gets ECONNRESET, not EOF."""
    raw = websocket.create_connection(server.url, timeout=1)
    try:
        assert server.wait_for_connections(1)
        server.drop_connections(rst=True)
        sock = raw.sock
        assert sock is not None
        with pytest.raises(ConnectionResetError):
            sock.recv(10)
    finally:
        raw.close(timeout=0)


def test_drop_without_rst_gives_eof():
    """drop_connections() (FIN): a raw reader sees EOF and no close frame first."""
    with MockWebSocketServer() as server:
        raw = websocket.create_connection(server.url, timeout=1)
        try:
            assert server.wait_for_connections(1)
            server.drop_connections()
            sock = raw.sock
            assert sock is not None
            assert sock.recv(10) == b""
        finally:
            raw.close(timeout=0)


# ------------------------------------------------------------------ stall


def test_stall_holds_messages_and_pings_then_resumes(server):
    """While stalled the server neither reads, answers pings nor sends; all resumes afterwards."""
    with connect(server.url) as ws:
        assert server.wait_for_connections(1)
        assert server.stall(ms(300)) == 1
        assert server.connections[0].stalled
        started = time.monotonic()
        pong = ws.ping(b"are-you-there")
        ws.send("during stall")
        server.inject_message("held")
        assert not pong.wait(ms(100)), "a stalled server does not answer pings"
        assert server.received == []
        assert ws.recv(timeout=2) == "held"
        assert time.monotonic() - started >= ms(250)
        assert pong.wait(1)
        assert server.assert_message_sent("during stall") == "during stall"
        assert not server.connections[0].stalled


def test_stall_until_resume(server):
    """stall() without duration lasts until resume()."""
    with connect(server.url) as ws:
        assert server.wait_for_connections(1)
        server.stall()
        ws.send("x")
        assert server.wait_for_message("x", timeout=ms(150)) is None
        server.resume()
        server.assert_message_sent("x")


def test_per_connection_stall_leaves_others_alone(echo_server):
    """conn.stall() affects that connection only."""
    with connect(echo_server.url) as a, connect(echo_server.url) as b:
        assert echo_server.wait_for_connections(2)
        echo_server.connections[0].stall()
        a.send("a")
        b.send("b")
        assert b.recv(timeout=1) == "b"
        with pytest.raises(TimeoutError):
            a.recv(timeout=ms(100))
        echo_server.connections[0].resume()
        assert a.recv(timeout=1) == "a"


# ------------------------------------------------------------------ refuse, restart


def test_refuse_connections_for_real_and_relisten_same_port(echo_server):
    """refuse_connections: ECONNREFUSED for new clients, existing ones kept; False listens again."""
    port = echo_server.port
    with connect(echo_server.url) as kept:
        echo_server.refuse_connections()
        assert_refused(port)
        kept.send("still here")
        assert kept.recv(timeout=1) == "still here"
        echo_server.refuse_connections(False)
        assert echo_server.port == port
        with connect(echo_server.url) as fresh:
            fresh.send("new")
            assert fresh.recv(timeout=1) == "new"


def test_restart_drops_connections_and_listens_again(echo_server):
    """restart(): current clients lose TCP without close frame; the same port accepts again."""
    with connect(echo_server.url) as old:
        assert echo_server.wait_for_connections(1)
        echo_server.restart()
        with pytest.raises(ConnectionClosedError):
            old.recv(timeout=1)
        assert old.close_code == 1006
    with connect(echo_server.url) as new:
        new.send("hi")
        assert new.recv(timeout=1) == "hi"
    assert echo_server.connection_count == 2


# ------------------------------------------------------------------ handshake faults


def test_reject_handshake_with_status_headers_and_times(server):
    """reject_handshake answers the upgrade with the status and headers, `times` times."""
    server.reject_handshake(429, times=2, headers={"Retry-After": "3"}, body="slow down")
    for _ in range(2):
        with pytest.raises(InvalidStatus) as info:
            _connect_once(server.url, 1)
        response = info.value.response
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "3"
        assert response.body == b"slow down"
    _connect_once(server.url, 1)
    assert server.rejected_count == 2
    assert server.connection_count == 1
    assert server.handshake_headers and len(server.handshake_headers) == 1


def test_reject_handshake_until_accepted(server):
    """Without times, rejection lasts until accept_handshakes()."""
    server.reject_handshake(401)
    for _ in range(3):
        with pytest.raises(InvalidStatus) as info:
            _connect_once(server.url, 1)
        assert info.value.response.status_code == 401
    server.accept_handshakes()
    _connect_once(server.url, 1)


def test_hang_handshake_times_out_client_then_releases(server):
    """hang_handshake: TCP accepted, upgrade never answered; hang_handshake(False) serves again."""
    server.hang_handshake()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        _connect_once(server.url, ms(200))
    assert time.monotonic() - started >= ms(150)
    assert server.attempt_count == 1 and server.connection_count == 0
    server.hang_handshake(False)
    _connect_once(server.url, 1)
    assert server.connection_count == 1


def test_reset_during_handshake(server):
    """reset_during_handshake: the request is read, then TCP is reset without a response."""
    server.reset_during_handshake(times=1)
    with pytest.raises((InvalidMessage, ConnectionClosed, OSError)):
        _connect_once(server.url, 1)
    _connect_once(server.url, 1)
    assert server.rejected_count == 1
    assert server.connection_count == 1


def test_check_handshake_hook_rejects():
    """A subclass can reject handshakes by path through check_handshake."""

    class OnlyWs(MockWebSocketServer):
        def check_handshake(self, path, headers):
            return None if path.startswith("/ws") else (404, "nope")

    with OnlyWs() as server:
        with pytest.raises(InvalidStatus) as info:
            _connect_once(server.url + "/other", 1)
        assert info.value.response.status_code == 404
        _connect_once(server.url + "/ws", 1)


# ------------------------------------------------------------------ assertions


def test_assert_message_sent_matchers(server):
    """Exact str/bytes, regex, nested partial dict and predicate all match; the message is returned."""
    with connect(server.url) as ws:
        ws.send('{"op": "subscribe", "args": {"channel": "trades", "depth": 10}, "id": 7}')
        ws.send(b"\x01binary")
        ws.send("plain text")
    assert server.assert_message_sent("plain text") == "plain text"
    assert server.assert_message_sent(b"\x01binary") == b"\x01binary"
    assert server.assert_message_sent(re.compile(r"plain\s+t")) == "plain text"
    assert server.assert_message_sent(re.compile(rb"^\x01")) == b"\x01binary"
    sub = server.assert_message_sent({"op": "subscribe", "args": {"channel": "trades"}})
    assert json.loads(sub)["id"] == 7
    assert server.assert_message_sent(lambda m: json.loads(m)["id"] == 7) == sub
    assert server.wait_for_message({"args": {"channel": "book"}}, timeout=ms(20)) is None


def test_assert_message_sent_failure_lists_received(server):
    """On timeout, the AssertionError names the expectation and lists what was received."""
    with connect(server.url) as ws:
        ws.send("first")
        ws.send("second")
    server.assert_message_sent("second")
    with pytest.raises(AssertionError) as info:
        server.assert_message_sent({"op": "x"}, timeout=ms(30))
    text = str(info.value)
    assert "{'op': 'x'}" in text
    assert "'first'" in text and "'second'" in text
    assert "received 2" in text


def test_assert_message_sent_waits_for_late_message(server):
    """assert_message_sent waits for a message that arrives after it was called."""
    with connect(server.url) as ws:
        timer = threading.Timer(ms(50), ws.send, args=("late",))
        timer.start()
        try:
            started = time.monotonic()
            assert server.assert_message_sent("late", timeout=1) == "late"
            assert time.monotonic() - started >= ms(40)
        finally:
            timer.join()


def test_message_matches_edge_cases():
    """Type mismatches and non-JSON messages do not match; partial dicts need every key."""
    assert not message_matches("a", b"a")
    assert not message_matches(re.compile("a"), b"a")
    assert not message_matches({"a": 1}, "not json")
    assert not message_matches({"a": 1}, "[1]")
    assert not message_matches({"a": {"b": 1}}, '{"a": 5}')
    assert message_matches({"a": [1, 2]}, '{"a": [1, 2], "b": 0}')
    assert not message_matches(lambda m: m["x"], "x")


def test_wait_for_connections(server):
    """wait_for_connections waits until n connections are open at once."""
    assert not server.wait_for_connections(1, timeout=ms(20))
    with connect(server.url), connect(server.url):
        assert server.wait_for_connections(2)
        assert len(server.connections) == 2


# ------------------------------------------------------------------ handlers and streams


def test_handler_reply_and_connection_object():
    """handler(conn, message) runs per message; a returned dict is sent back as JSON."""
    seen = []

    def handler(conn, message):
        seen.append((conn.id, conn.path, conn.request_headers.get("X-Trace")))
        if message == "ping":
            return {"pong": True}
        return None

    with MockWebSocketServer(handler=handler) as server:
        with connect(server.url + "/h", additional_headers={"X-Trace": "t"}) as ws:
            ws.send("ping")
            assert json.loads(ws.recv(timeout=1)) == {"pong": True}
            ws.send("no reply")
            server.assert_message_sent("no reply")
            with pytest.raises(TimeoutError):
                ws.recv(timeout=ms(50))
    assert seen == [(1, "/h", "t"), (1, "/h", "t")]


def test_handler_exception_closes_with_1011_and_is_recorded():
    """A failing handler is recorded in server.errors and its connection closed with 1011."""

    def handler(conn, message):
        raise RuntimeError("boom")

    with MockWebSocketServer(handler=handler) as server, connect(server.url) as ws:
        ws.send("x")
        with pytest.raises(ConnectionClosedError):
            ws.recv(timeout=1)
        assert ws.close_code == 1011
        assert server.wait_for(lambda: len(server.errors) == 1)
        assert isinstance(server.errors[0], RuntimeError)


def test_on_connect_and_conn_send_close():
    """on_connect runs once per connection; conn.send and conn.close work from it."""

    def greet(conn):
        conn.send({"hello": conn.id})
        if conn.id == 2:
            conn.close(4002, "go away")

    with MockWebSocketServer(on_connect=greet) as server:
        with connect(server.url) as ws:
            assert json.loads(ws.recv(timeout=1)) == {"hello": 1}
        with connect(server.url) as ws:
            assert json.loads(ws.recv(timeout=1)) == {"hello": 2}
            with pytest.raises(ConnectionClosed):
                ws.recv(timeout=1)
            assert ws.close_code == 4002


def test_start_stream_numbers_messages_per_connection(server):
    """start_stream sends make_message(1..count) to each connection, numbered per connection."""
    with connect(server.url) as a:
        stream = server.start_stream(lambda seq: {"seq": seq}, interval=0, count=5)
        assert [json.loads(a.recv(timeout=1))["seq"] for _ in range(5)] == [1, 2, 3, 4, 5]
        with connect(server.url) as b:
            assert [json.loads(b.recv(timeout=1))["seq"] for _ in range(5)] == [1, 2, 3, 4, 5]
        with pytest.raises(TimeoutError):
            a.recv(timeout=ms(30))
        assert stream.sent == 10
        stream.stop()
        assert not stream.running


def test_start_stream_interval_and_stop(server):
    """With an interval, messages are paced; stop() ends the stream."""
    with connect(server.url) as ws:
        assert server.wait_for_connections(1)
        stream = server.start_stream(lambda seq: f"tick {seq}", interval=ms(20))
        started = time.monotonic()
        got = [ws.recv(timeout=1) for _ in range(4)]
        assert got == ["tick 1", "tick 2", "tick 3", "tick 4"]
        assert time.monotonic() - started >= ms(50)
        stream.stop()
        assert not stream.running


# ------------------------------------------------------------------ plans


def test_plan_applies_faults_to_successive_connections(server):
    """plan: reject, drop, close, stall, then normal, one per connection in order."""
    server.plan([("reject", 503), ("drop", ms(30)), ("close", 4000, 0), ("stall", 0, ms(150)), None])
    assert server.plan_remaining == 5
    with pytest.raises(InvalidStatus) as info:
        _connect_once(server.url, 1)
    assert info.value.response.status_code == 503

    with connect(server.url) as ws:
        with pytest.raises(ConnectionClosedError):
            ws.recv(timeout=1)
        assert ws.close_code == 1006

    with connect(server.url) as ws:
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=1)
        assert ws.close_code == 4000

    with connect(server.url) as ws:
        assert server.wait_for(lambda: any(c.stalled for c in server.connections))
        pong = ws.ping()
        assert not pong.wait(ms(60))
        assert pong.wait(1)

    with connect(server.url) as ws:
        assert ws.ping().wait(1)
    assert server.plan_remaining == 0


def test_plan_refuse_window(server):
    """("refuse", d): that connection is reset and new ones are refused for d seconds."""
    port = server.port
    server.plan([("refuse", ms(200))])
    with pytest.raises((InvalidMessage, ConnectionClosed, OSError)):
        _connect_once(server.url, 1)
    assert_refused(port)
    deadline = time.monotonic() + 2
    while True:
        try:
            _connect_once(server.url, 1)
            break
        except ConnectionRefusedError:
            assert time.monotonic() < deadline, "server never listened again"
            time.sleep(ms(20))
    assert server.connection_count == 1


def test_plan_rejects_malformed_items(server):
    """Unknown fault names, extra items and unsendable close codes raise ValueError."""
    for bad in [("explode",), ("drop", 1, 2), ("close", 1006, 0), "nope", 42]:
        with pytest.raises(ValueError):
            server.plan([bad])


def test_connection_ids_count_tcp_attempts(server):
    """conn.id numbers TCP connections, rejected ones included."""
    server.reject_handshake(503, times=1)
    with pytest.raises(InvalidStatus):
        _connect_once(server.url, 1)
    with connect(server.url):
        assert server.wait_for_connections(1)
        assert server.connections[0].id == 2
    assert server.attempt_count == 2


def test_refused_errno_is_econnrefused(server):
    """Refusal is the kernel's: errno ECONNREFUSED."""
    server.refuse_connections()
    with pytest.raises(OSError) as info:
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    assert info.value.errno == errno.ECONNREFUSED


def test_package_exports():
    """zen_websocket.testing exports the servers named in its __all__."""
    import zen_websocket.testing as testing

    assert {"MockWebSocketServer", "DeribitEmulator", "BinanceEmulator"} <= set(testing.__all__)
    for name in testing.__all__:
        assert getattr(testing, name).__doc__


def test_history_bounds_what_is_remembered_of_closed_connections():
    from websockets.sync.client import connect as ws_connect

    from tests.timeunit import wait_until
    from zen_websocket.testing import MockWebSocketServer

    with MockWebSocketServer(history=2) as server:
        for _ in range(5):
            with ws_connect(server.url):
                pass
        assert wait_until(lambda: not server.connections)
        with ws_connect(server.url):
            assert server.wait_for_connections(1)
            assert server.connection_count == 6
            assert len(server.all_connections) == 3  # 2 closed + the open one
            assert len(server.handshake_headers) == 3
            assert server.all_connections[-1].is_open

"""Client core: the five functions, receiving, callbacks, queue, close."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time

import pytest

import zen_websocket as zw
from tests.timeunit import ms, wait_until
from zen_websocket import telemetry

FAST = {"heartbeat_config": None, "retry_delay": ms(10), "max_backoff": ms(50), "close_timeout": ms(500)}


def test_connect_send_recv_close_round_trip(echo_server):
    client = zw.connect(echo_server.url, **FAST)
    try:
        assert client.get_state() == "connected"
        assert client.get_state() is zw.ConnectionState.CONNECTED
        assert client.send_message("hello") is None
        assert client.recv(timeout=2) == "hello"
        client.send_message(b"\x00\xff")
        assert client.recv(timeout=2) == b"\x00\xff"
        client.send_message({"a": [1, 2]})
        assert json.loads(client.recv(timeout=2)) == {"a": [1, 2]}
        client.send_message([1, "x"])
        assert client.recv_json(timeout=2) == [1, "x"]
    finally:
        client.close()
    assert client.get_state() == "disconnected"
    assert echo_server.received == ["hello", b"\x00\xff", '{"a":[1,2]}', '[1,"x"]']


def test_state_is_disconnected_before_connect_and_connecting_is_reported(server):
    client = zw.Client(server.url, **FAST)
    assert client.get_state() == "disconnected"
    states = []
    client.on("connect", lambda c: states.append(c.get_state()))
    client.connect()
    client.close()
    assert states == ["connected"]


def test_context_manager_connects_and_closes(echo_server):
    with zw.connect(echo_server.url, **FAST) as client:
        client.send_message("x")
        assert client.recv(2) == "x"
    assert client.get_state() == "disconnected"
    with zw.Client(echo_server.url, **FAST) as client2:
        assert client2.get_state() == "connected"
    assert client2.get_state() == "disconnected"


def test_unsupported_payload_raises_type_error_and_sends_nothing(server):
    with zw.connect(server.url, **FAST) as client:
        with pytest.raises(TypeError):
            client.send_message(3.14)
        with pytest.raises(TypeError):
            client.send_message({"x": object()})
        with pytest.raises(TypeError):
            client.send_message({"x": float("nan")})
        client.send_message("after")
        server.assert_message_sent("after", timeout=2)
    assert server.received == ["after"]


def test_send_after_close_raises_not_connected(server):
    client = zw.connect(server.url, **FAST)
    client.close()
    with pytest.raises(zw.NotConnectedError):
        client.send_message("late")
    with pytest.raises(zw.NotConnectedError):
        client.request("public/test")


def test_recv_times_out_with_builtin_timeout_error(server):
    with zw.connect(server.url, **FAST) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            client.recv(timeout=ms(50))
        assert time.monotonic() - started >= ms(45)


def test_recv_drains_queue_then_raises_connection_closed(server):
    client = zw.connect(server.url, **FAST)
    server.inject_message("one")
    server.inject_message("two")
    assert wait_until(lambda: client.get_state_metrics()["queue_size"] == 2)
    client.close()
    assert client.recv(1) == "one"
    assert client.recv(1) == "two"
    with pytest.raises(zw.ConnectionClosed):
        client.recv(1)
    with pytest.raises(zw.ConnectionClosed):
        client.recv(1)


def test_iteration_ends_when_client_closes(server):
    client = zw.connect(server.url, **FAST)
    got = []

    def consume():
        got.extend(client)

    thread = threading.Thread(target=consume)
    thread.start()
    for i in range(5):
        server.inject_message(f"m{i}")
    assert wait_until(lambda: len(got) == 5)
    client.close()
    thread.join(2)
    assert not thread.is_alive()
    assert got == [f"m{i}" for i in range(5)]


def blocked_in_recv(thread: threading.Thread) -> bool:
    """Whether ``thread`` is in the blocking call made by ``Client.recv`` (a queue get, a wait, or its own poll).

    A sync point read from the thread's stack, instead of a sleep that hopes it got there.
    """
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None or frame.f_code.co_name not in ("get", "wait", "acquire", "lead_wait"):
        return False  # not started, finished, or still on its way to the wait
    while frame is not None:
        if frame.f_code.co_name == "recv" and frame.f_globals.get("__name__", "").startswith("zen_websocket"):
            return True
        frame = frame.f_back
    return False


def test_close_from_another_thread_wakes_a_blocked_recv(server):
    client = zw.connect(server.url, **FAST)
    outcome = []

    def blocked():
        try:
            client.recv()
        except zw.ConnectionClosed as exc:
            outcome.append(exc)

    thread = threading.Thread(target=blocked)
    thread.start()
    assert wait_until(lambda: blocked_in_recv(thread))
    client.close()
    thread.join(2)
    assert len(outcome) == 1


def test_second_concurrent_recv_is_a_usage_error(server):
    with zw.connect(server.url, **FAST) as client:

        def first_consumer():
            with pytest.raises(zw.ConnectionClosed):
                client.recv()

        thread = threading.Thread(target=first_consumer)
        thread.start()
        assert wait_until(lambda: blocked_in_recv(thread))
        with pytest.raises(zw.UsageError):
            client.recv(timeout=ms(10))
    thread.join(2)


def test_recv_before_connect_is_not_connected(server):
    client = zw.Client(server.url, **FAST)
    with pytest.raises(zw.NotConnectedError):
        client.recv(timeout=ms(10))


def test_message_callbacks_take_messages_instead_of_the_queue(server):
    seen = []
    client = zw.connect(server.url, on_message=lambda c, m: seen.append(m), **FAST)
    try:
        server.inject_message("a")
        server.inject_message(b"b")
        assert wait_until(lambda: seen == ["a", b"b"])
        assert client.get_state_metrics()["queue_size"] == 0
        client.off("message")
        server.inject_message("queued")
        assert client.recv(2) == "queued"
        assert seen == ["a", b"b"]
    finally:
        client.close()


def test_raising_callback_is_reported_and_receiver_keeps_running(server, caplog):
    errors_seen = []
    seen = []

    def bad(client, message):
        if message == "boom":
            raise RuntimeError("callback failed")
        seen.append(message)

    with caplog.at_level(logging.ERROR, logger="zen_websocket"):
        with zw.connect(server.url, on_message=bad, on_error=lambda c, e: errors_seen.append(e), **FAST) as client:
            server.inject_message("boom")
            server.inject_message("after")
            assert wait_until(lambda: seen == ["after"])
            assert client.get_state() == "connected"
            assert client.get_state_metrics()["callback_errors"] == 1
    assert len(errors_seen) == 1
    assert isinstance(errors_seen[0], zw.CallbackError)
    assert isinstance(errors_seen[0].__cause__, RuntimeError)
    assert "callback failed" in caplog.text and "Traceback" in caplog.text


def test_on_rejects_unknown_event_and_off_reports_removal(server):
    client = zw.Client(server.url, **FAST)

    def fn(*args):
        return None

    with pytest.raises(zw.ConfigError):
        client.on("tick", fn)
    client.on("error", fn)
    assert client.off("error", fn) is True
    assert client.off("error", fn) is False


def test_request_from_message_callback_raises_usage_error_not_deadlock(server):
    errors_seen = []

    def callback(client, message):
        client.request("public/test", timeout=5)

    with zw.connect(server.url, on_message=callback, on_error=lambda c, e: errors_seen.append(e), **FAST) as client:
        server.inject_message("go")
        assert wait_until(lambda: len(errors_seen) == 1)
        assert isinstance(errors_seen[0].__cause__, zw.UsageError)
        assert client.get_state() == "connected"


@pytest.mark.parametrize(
    ("overflow", "expected"),
    [("drop_oldest", ["m7", "m8", "m9"]), ("drop_newest", ["m0", "m1", "m2"])],
)
def test_bounded_queue_drops_by_policy_and_counts_every_drop(server, overflow, expected):
    drops = []
    telemetry.attach(
        "overflow-test", ("zen_websocket", "client", "queue_overflow"), lambda e, m, md, c: drops.append(m)
    )
    try:
        with zw.connect(server.url, max_queue=3, overflow=overflow, **FAST) as client:
            for i in range(10):
                server.inject_message(f"m{i}")
            assert wait_until(lambda: client.get_state_metrics()["messages_received"] == 10)
            assert client.get_state_metrics()["dropped_messages"] == 7
            assert [client.recv(1) for _ in range(3)] == expected
    finally:
        telemetry.detach("overflow-test")
    assert len(drops) == 7


def test_block_policy_loses_nothing(server):
    with zw.connect(server.url, max_queue=2, overflow="block", **FAST) as client:
        for i in range(20):
            server.inject_message(f"m{i}")
        metrics = client.get_state_metrics
        # The queue is full and the receive thread holds a third message (counted when read):
        # it had the chance to overflow or drop, so from here the queue must stay at 2.
        assert wait_until(lambda: metrics()["queue_size"] == 2 and metrics()["messages_received"] >= 3)
        assert not wait_until(lambda: metrics()["queue_size"] > 2 or metrics()["dropped_messages"] > 0, timeout=0.05)
        got = [client.recv(2) for _ in range(20)]
        assert got == [f"m{i}" for i in range(20)]
        assert client.get_state_metrics()["dropped_messages"] == 0


def test_block_policy_does_not_hang_close(server):
    client = zw.connect(server.url, max_queue=1, overflow="block", **FAST)
    for i in range(5):
        server.inject_message(f"m{i}")
    assert wait_until(lambda: client.get_state_metrics()["queue_size"] == 1)
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 1.5


def test_close_is_idempotent_and_bounded_with_a_stalled_peer(server):
    client = zw.connect(server.url, **{**FAST, "close_timeout": ms(200)})
    server.stall()
    started = time.monotonic()
    client.close()
    elapsed = time.monotonic() - started
    assert elapsed < ms(200) + 0.5
    client.close()
    client.close(timeout=0.01)
    assert client.get_state() == "disconnected"
    server.resume()


def test_close_sends_a_close_frame_with_1000(server):
    client = zw.connect(server.url, **FAST)
    server.wait_for_connections(1, timeout=2)
    conn = server.all_connections[0]
    client.close()
    assert wait_until(lambda: conn.close_code is not None)
    assert conn.close_code == 1000


def test_close_event_fires_once_with_code_and_reason(server):
    closes = []
    client = zw.connect(server.url, on_close=lambda c, code, reason: closes.append((code, reason)), **FAST)
    client.close()
    client.close()
    assert closes == [(1000, "closed by client")]


def test_close_from_inside_a_callback(server):
    done = threading.Event()

    def on_message(client, message):
        client.close()
        done.set()

    client = zw.connect(server.url, on_message=on_message, **FAST)
    server.inject_message("close please")
    assert done.wait(2)
    assert wait_until(lambda: client.get_state() == "disconnected")
    client.close()


def test_headers_and_subprotocols_reach_the_server():
    from zen_websocket.testing import MockWebSocketServer

    with MockWebSocketServer(subprotocols=["json.v2"]) as server:
        with zw.connect(server.url, headers={"X-Api-Key": "k1"}, subprotocols=["json.v2"], **FAST) as client:
            assert client.subprotocol == "json.v2"
        headers = {k.lower(): v for k, v in server.handshake_headers[0].items()}
        assert headers["x-api-key"] == "k1"
        assert headers["sec-websocket-protocol"] == "json.v2"


def test_wss_with_trusted_context_and_rejected_default_verification():
    from zen_websocket.testing import MockWebSocketServer

    with MockWebSocketServer(tls=True, echo=True) as server:
        assert server.url.startswith("wss://")
        with zw.connect(server.url, ssl_context=server.client_ssl_context(), **FAST) as client:
            client.send_message("secure")
            assert client.recv(2) == "secure"
        started = time.monotonic()
        with pytest.raises(zw.ConnectError) as info:
            zw.connect(server.url, **FAST)  # default context: the throwaway CA is not trusted
        assert info.value.reason == "tls"
        assert info.value.attempts == 1  # a certificate failure is fatal: no retries
        assert time.monotonic() - started < 1.0


def test_metrics_count_both_directions(echo_server):
    with zw.connect(echo_server.url, **FAST) as client:
        for i in range(5):
            client.send_message(f"m{i}")
        for _ in range(5):
            client.recv(2)
        metrics = client.get_state_metrics()
    for key in (
        "state",
        "url",
        "connected_since",
        "uptime",
        "reconnects",
        "messages_received",
        "messages_sent",
        "bytes_received",
        "bytes_sent",
        "queue_size",
        "dropped_messages",
        "pending_requests",
        "subscriptions",
        "latency_p50",
        "latency_p99",
        "last_error",
    ):
        assert key in metrics
    assert metrics["messages_sent"] == 5
    assert metrics["messages_received"] == 5
    assert metrics["bytes_received"] == 5 * (2 + 2)
    assert metrics["bytes_sent"] == 5 * (2 + 4 + 2)
    assert metrics["state"] == "connected"
    assert metrics["uptime"] > 0


def test_telemetry_reports_lifecycle_and_messages(echo_server):
    events = []
    telemetry.attach_many(
        "lifecycle-test",
        [
            ("zen_websocket", "client", "connect"),
            ("zen_websocket", "client", "message_sent"),
            ("zen_websocket", "client", "message_received"),
            ("zen_websocket", "client", "close"),
        ],
        lambda event, measurements, metadata, config: events.append((event[-1], measurements, metadata)),
    )
    try:
        with zw.connect(echo_server.url, name="feed-1", **FAST) as client:
            client.send_message("abc")
            client.recv(2)
    finally:
        telemetry.detach("lifecycle-test")
    names = [name for name, _, _ in events]
    assert names == ["connect", "message_sent", "message_received", "close"]
    assert events[1][1] == {"size": 3}
    assert events[2][1] == {"size": 3}
    assert all(metadata["name"] == "feed-1" for _, _, metadata in events)


def test_debug_logging_never_shows_secrets(echo_server, caplog):
    with caplog.at_level(logging.DEBUG, logger="zen_websocket"):
        with zw.connect(echo_server.url, debug=True, headers={"Authorization": "Bearer TOPSECRET"}, **FAST) as client:
            client.send_message({"method": "public/auth", "params": {"client_secret": "SHHH", "client_id": "me"}})
            client.recv(2)
    assert "client_id" in caplog.text  # the frame itself was logged
    assert "SHHH" not in caplog.text
    assert "TOPSECRET" not in caplog.text


def test_threads_are_named_and_gone_after_close(server):
    client = zw.connect(server.url, heartbeat_config={"type": "ping", "interval": ms(50)}, close_timeout=ms(500))
    names = {t.name for t in threading.enumerate() if t.name.startswith("zen-ws-")}
    assert any(n.startswith("zen-ws-recv-") for n in names)
    assert "zen-ws-timer" in names  # heartbeats run on the process's one timer thread
    assert not any(n.startswith("zen-ws-supervisor-") for n in names)  # no second thread per client
    client.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("zen-ws-")]


def test_connect_twice_and_after_close_are_usage_errors(server):
    client = zw.connect(server.url, **FAST)
    with pytest.raises(zw.UsageError):
        client.connect()
    client.close()
    with pytest.raises(zw.UsageError):
        client.connect()


def _run_script(code: str, timeout: float = 10.0, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env, **kwargs
    )


def test_script_that_forgets_close_exits_promptly(server):
    code = f"""
import time, zen_websocket as zw
client = zw.connect({server.url!r})
client.send_message("bye")
time.sleep(0.05)
t = time.monotonic()
import atexit
atexit.register(lambda: print("atexit", round(time.monotonic() - t, 3)))
"""
    started = time.monotonic()
    result = _run_script(code)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 5  # interpreter start included
    server.assert_message_sent("bye", timeout=2)
    assert wait_until(lambda: server.all_connections and server.all_connections[0].close_code == 1000)


def test_ctrl_c_interrupts_a_blocking_recv(server):
    code = f"""
import os, signal, threading, time, zen_websocket as zw
client = zw.connect({server.url!r})
threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
t = time.monotonic()
try:
    client.recv()
except KeyboardInterrupt:
    print("interrupted", round(time.monotonic() - t, 2))
client.close()
"""
    result = _run_script(code)
    assert result.returncode == 0, result.stderr
    assert "interrupted" in result.stdout
    assert float(result.stdout.split()[-1]) < 1.0

"""Reconnection, backoff, fatal errors and heartbeats against real loopback servers."""

from __future__ import annotations

import json
import threading
import time

import pytest

import zen_websocket as zw
from tests.timeunit import ms, wait_until
from zen_websocket import telemetry
from zen_websocket.testing import MockWebSocketServer

BASE = {
    "heartbeat_config": None,
    "retry_delay": ms(20),
    "max_backoff": ms(200),
    "close_timeout": ms(300),
    "timeout": 1.0,
}


class Recorder:
    """Collects client events in order."""

    def __init__(self):
        self.events = []
        self.cond = threading.Condition()

    def options(self):
        def make(name):
            def fn(client, *args):
                with self.cond:
                    self.events.append((name, *args))
                    self.cond.notify_all()

            return fn

        return {f"on_{name}": make(name) for name in ("connect", "disconnect", "reconnect", "error", "close")}

    def names(self):
        return [e[0] for e in self.events]

    def wait(self, name, count=1, timeout=3.0):
        with self.cond:
            return self.cond.wait_for(lambda: self.names().count(name) >= count, timeout)


def subscribe_handler(conn, message):
    """Answer Deribit-style subscribe requests with every channel confirmed."""
    if isinstance(message, str) and '"method"' in message:
        request = json.loads(message)
        if request.get("method", "").endswith("subscribe"):
            return {"jsonrpc": "2.0", "id": request["id"], "result": request["params"]["channels"]}
    return None


@pytest.mark.parametrize("code", [1000, 1001, 1011, 1012, 4000])
def test_server_close_is_followed_by_reconnect_and_restore(code):
    rec = Recorder()
    with MockWebSocketServer(handler=subscribe_handler) as server:
        client = zw.connect(server.url, **BASE, **rec.options())
        try:
            client.subscribe(["ticker.BTC", "trades.ETH"], wait=True, timeout=2)
            server.simulate_disconnect(code, "bye")
            assert rec.wait("reconnect")
            assert client.get_state() == "connected"
            assert server.connection_count == 2
            restores = [m for m in server.received if "subscribe" in str(m)]
            assert len(restores) == 2
            assert json.loads(restores[1])["params"]["channels"] == ["ticker.BTC", "trades.ETH"]
            disconnect = next(e for e in rec.events if e[0] == "disconnect")
            assert disconnect[1] == f"remote_close:{code}"
            assert ("reconnect", 1) in rec.events
            assert client.get_state_metrics()["reconnects"] == 1
        finally:
            client.close()
    # connect -> disconnect -> connect (callbacks re-run) -> reconnect, then close
    assert rec.names() == ["connect", "disconnect", "connect", "reconnect", "close"]


def test_dropped_tcp_reconnects():
    rec = Recorder()
    with MockWebSocketServer() as server:
        with zw.connect(server.url, **BASE, **rec.options()) as client:
            server.drop_connections()
            assert rec.wait("reconnect")
            assert client.get_state() == "connected"
    assert ("disconnect", "connection_dropped") in rec.events


@pytest.mark.parametrize("code", [1002, 1003, 1007, 1009, 1010])
def test_fatal_close_codes_end_the_client(code):
    rec = Recorder()
    twin = Recorder()
    with MockWebSocketServer() as server:
        client = zw.connect(server.url, **BASE, **rec.options())
        # A twin with the same backoff, closed later with a code that is retried: once it is
        # back, the client under test has had longer than a retry delay to come back too.
        with zw.connect(server.url, **BASE, **twin.options()):
            assert server.wait_for_connections(2)
            first, second = sorted(server.connections, key=lambda conn: conn.id)
            first.close(code)
            assert rec.wait("close")
            assert client.get_state() == "disconnected"
            second.close(1012)
            assert twin.wait("reconnect")
            assert server.attempt_count == 3  # the twin's reconnect only: no reconnect
        errors = [e[1] for e in rec.events if e[0] == "error"]
        assert isinstance(errors[0], zw.ConnectionClosed) and errors[0].code == code
        with pytest.raises(zw.ConnectionClosed):
            client.recv(1)
        client.close()


def test_backoff_delays_double_up_to_the_cap_then_give_up():
    attempts = []
    telemetry.attach("backoff-test", ("zen_websocket", "reconnect", "attempt"), lambda e, m, md, c: attempts.append(m))
    rec = Recorder()
    try:
        with MockWebSocketServer() as server:
            options = {**BASE, "retry_delay": ms(10), "max_backoff": ms(40), "retry_count": 4}
            client = zw.connect(server.url, **options, **rec.options())
            server.refuse_connections(True)
            server.drop_connections()
            assert rec.wait("close", timeout=5)
            server.refuse_connections(False)
    finally:
        telemetry.detach("backoff-test")
    assert [a["delay"] for a in attempts] == [ms(10), ms(20), ms(40), ms(40)]
    assert [a["attempt"] for a in attempts] == [1, 2, 3, 4]
    assert rec.events[-1] == ("close", None, "retries_exhausted")
    assert client.get_state() == "disconnected"
    with pytest.raises(zw.ConnectionClosed) as info:
        client.recv(1)
    assert info.value.reason == "retries_exhausted"
    client.close()


def test_give_up_drains_queued_messages_before_connection_closed():
    with MockWebSocketServer() as server:
        client = zw.connect(server.url, **{**BASE, "retry_count": 1})
        server.inject_message("kept-1")
        server.inject_message("kept-2")
        assert wait_until(lambda: client.get_state_metrics()["queue_size"] == 2)
        server.refuse_connections(True)
        server.drop_connections()
        assert wait_until(lambda: client.get_state() == "disconnected")
        assert client.recv(1) == "kept-1"
        assert client.recv(1) == "kept-2"
        with pytest.raises(zw.ConnectionClosed):
            client.recv(1)
        client.close()
        server.refuse_connections(False)


def test_successful_reconnect_resets_the_failure_count():
    rec = Recorder()
    with MockWebSocketServer() as server:
        with zw.connect(server.url, **{**BASE, "retry_count": 2}, **rec.options()) as client:
            for round_ in range(1, 4):
                server.reject_handshake(503, times=1)  # one failure per outage
                server.drop_connections()
                assert rec.wait("reconnect", count=round_)
            assert client.get_state() == "connected"
            assert [e for e in rec.events if e[0] == "reconnect"] == [("reconnect", 2)] * 3


def test_close_during_backoff_returns_at_once():
    backing_off = threading.Event()
    # Emitted as the client starts waiting out the delay it reports.
    telemetry.attach(
        "close-in-backoff-test", ("zen_websocket", "reconnect", "attempt"), lambda e, m, md, c: backing_off.set()
    )
    try:
        with MockWebSocketServer() as server:
            client = zw.connect(server.url, **{**BASE, "retry_delay": 5.0, "max_backoff": 5.0, "retry_count": None})
            server.refuse_connections(True)
            server.drop_connections()
            assert backing_off.wait(3)
            assert client.get_state() == "connecting"
            started = time.monotonic()
            client.close()
            assert time.monotonic() - started < 0.5
            assert client.get_state() == "disconnected"
            server.refuse_connections(False)
    finally:
        telemetry.detach("close-in-backoff-test")


def test_first_connect_retries_until_the_server_is_up():
    with MockWebSocketServer() as server:
        server.refuse_connections(True)
        threading.Timer(ms(60), server.refuse_connections, args=(False,)).start()
        client = zw.connect(server.url, **{**BASE, "retry_delay": ms(20), "retry_count": 10})
        assert client.get_state() == "connected"
        client.close()


def test_first_connect_gives_up_with_attempts_and_reason():
    with MockWebSocketServer() as server:
        url = server.url
        server.refuse_connections(True)
        with pytest.raises(zw.ConnectError) as info:
            zw.connect(url, **{**BASE, "retry_count": 2})
        server.refuse_connections(False)
    assert info.value.reason == "econnrefused"
    assert info.value.attempts == 3


@pytest.mark.parametrize(
    ("status", "reason"), [(401, "unauthorized"), (403, "unauthorized"), (404, "handshake_status")]
)
def test_client_errors_on_upgrade_are_fatal_at_once(status, reason):
    with MockWebSocketServer() as server:
        server.reject_handshake(status)
        with pytest.raises(zw.ConnectError) as info:
            zw.connect(server.url, **{**BASE, "retry_count": 5})
        assert server.attempt_count == 1
    assert info.value.status_code == status
    assert info.value.reason == reason
    assert info.value.attempts == 1


@pytest.mark.parametrize("status", [503, 429, 502])
def test_server_errors_on_upgrade_are_retried(status):
    with MockWebSocketServer() as server:
        server.reject_handshake(status, times=2)
        client = zw.connect(server.url, **{**BASE, "retry_count": 3})
        assert client.get_state() == "connected"
        client.close()


def test_a_server_that_never_answers_the_upgrade_times_out_and_retries():
    with MockWebSocketServer() as server:
        server.hang_handshake(True)
        started = time.monotonic()
        with pytest.raises(zw.ConnectError) as info:
            zw.connect(server.url, **{**BASE, "timeout": ms(100), "retry_count": 1})
        elapsed = time.monotonic() - started
        server.hang_handshake(False)
    assert info.value.reason == "timeout"
    assert info.value.attempts == 2
    assert elapsed < 2.0


def test_reset_during_the_upgrade_is_retried():
    with MockWebSocketServer() as server:
        server.reset_during_handshake(times=2)
        client = zw.connect(server.url, **{**BASE, "retry_count": 3})
        assert client.get_state() == "connected"
        client.close()


def test_reconnect_on_error_false_ends_at_the_first_loss():
    rec = Recorder()
    with MockWebSocketServer() as server:
        client = zw.connect(server.url, **{**BASE, "reconnect_on_error": False}, **rec.options())
        server.simulate_disconnect(1001)
        assert rec.wait("close")
        assert client.get_state() == "disconnected"
        assert server.connection_count == 1
        client.close()


def test_is_fatal_predicate_stops_retrying():
    with MockWebSocketServer() as server:
        server.reject_handshake(503)
        with pytest.raises(zw.ConnectError) as info:
            zw.connect(server.url, **{**BASE, "retry_count": 5, "is_fatal": lambda exc: True})
        assert info.value.attempts == 1


def test_requests_in_flight_fail_with_connection_lost_and_are_not_resent():
    rec = Recorder()
    with MockWebSocketServer() as server:
        with zw.connect(server.url, **BASE, **rec.options()) as client:
            future = client.request_async("private/buy", {"amount": 1})
            server.assert_message_sent({"method": "private/buy"}, timeout=2)
            server.drop_connections()
            with pytest.raises(zw.ConnectionLost):
                future.result(2)
            assert rec.wait("reconnect")
            assert client.get_state() == "connected"
            # A round trip after the reconnect: whatever the client sent on the new
            # connection before it (a resent request) has reached the server by now.
            client.send_message("after-reconnect")
            server.assert_message_sent("after-reconnect", timeout=2)
            assert sum("private/buy" in str(m) for m in server.received) == 1


def test_blocking_request_fails_fast_when_the_connection_drops():
    with MockWebSocketServer() as server:
        with zw.connect(server.url, **BASE) as client:
            threading.Timer(ms(50), server.drop_connections).start()
            started = time.monotonic()
            with pytest.raises(zw.ConnectionLost):
                client.request("private/buy", {"amount": 1}, timeout=5)
            assert time.monotonic() - started < 1.0


def test_ping_heartbeat_detects_a_half_open_peer():
    rec = Recorder()
    failures = []
    telemetry.attach("hb-fail", ("zen_websocket", "heartbeat", "failure"), lambda e, m, md, c: failures.append(m))
    interval, timeout = ms(60), ms(60)
    try:
        with MockWebSocketServer() as server:
            options = {**BASE, "heartbeat_config": {"type": "ping", "interval": interval, "timeout": timeout}}
            with zw.connect(server.url, **options, **rec.options()) as client:
                assert wait_until(lambda: client.get_heartbeat_health()["last_rtt"] is not None)
                stalled_at = time.monotonic()
                server.stall(1.0)
                assert rec.wait("disconnect", timeout=3)
                detected = time.monotonic() - stalled_at
                assert ("disconnect", "heartbeat_timeout") in rec.events
                assert detected < interval + timeout + 0.3
                assert rec.wait("reconnect", timeout=3)
                health = client.get_heartbeat_health()
                assert health["total_failures"] >= 1
                assert health["type"] == "ping" and health["active"] is True
    finally:
        telemetry.detach("hb-fail")
    assert failures


def test_custom_heartbeat_replies_are_consumed_and_measured():
    def handler(conn, message):
        return "pong" if message == "ping" else None

    with MockWebSocketServer(handler=handler) as server:
        options = {
            **BASE,
            "heartbeat_config": {"type": "custom", "interval": ms(30), "message": "ping", "expect": "pong"},
        }
        with zw.connect(server.url, **options) as client:
            assert wait_until(lambda: client.get_heartbeat_health()["last_rtt"] is not None)
            server.inject_message("data")
            assert client.recv(2) == "data"  # the pongs never reach the user
            assert client.get_state_metrics()["queue_size"] == 0
            assert server.received.count("ping") >= 1


def test_custom_heartbeat_without_reply_is_dead():
    rec = Recorder()
    with MockWebSocketServer() as server:
        hb = {
            "type": "custom",
            "interval": ms(30),
            "timeout": ms(30),
            "message": {"op": "ping"},
            "expect": lambda m: '"pong"' in m,
        }
        client = zw.connect(server.url, **{**BASE, "heartbeat_config": hb}, **rec.options())
        assert rec.wait("disconnect", timeout=3)
        assert ("disconnect", "heartbeat_timeout") in rec.events
        server.assert_message_sent({"op": "ping"})
        client.close()


def test_max_silence_reconnects_a_silent_connection():
    rec = Recorder()
    with MockWebSocketServer() as server:
        client = zw.connect(server.url, **{**BASE, "max_silence": ms(80)}, **rec.options())
        assert rec.wait("disconnect", timeout=3)
        assert ("disconnect", "max_silence") in rec.events
        assert rec.wait("reconnect", timeout=3)
        client.close()


def test_deribit_heartbeat_answers_test_requests_and_hides_them(monkeypatch):
    monkeypatch.setattr("zen_websocket.config.DERIBIT_MIN_HEARTBEAT_INTERVAL", 0.01)
    state = {"tests": 0}

    def handler(conn, message):
        request = json.loads(message)
        if request["method"] == "public/set_heartbeat":
            conn.send({"jsonrpc": "2.0", "id": request["id"], "result": "ok"})
            conn.send({"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request"}})
            conn.send({"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "heartbeat"}})
            conn.send("after-heartbeats")
        elif request["method"] == "public/test":
            state["tests"] += 1
            return {"jsonrpc": "2.0", "id": request["id"], "result": {"version": "1.2.26"}}
        return None

    with MockWebSocketServer(handler=handler) as server:
        hb = {"type": "deribit", "interval": ms(100)}
        with zw.connect(server.url, **{**BASE, "heartbeat_config": hb}) as client:
            assert client.recv(2) == "after-heartbeats"
            server.assert_message_sent({"method": "public/set_heartbeat", "params": {"interval": ms(100)}})
            server.assert_message_sent({"method": "public/test"})
            assert wait_until(lambda: state["tests"] == 1)
            with pytest.raises(TimeoutError):
                client.recv(ms(50))  # neither heartbeats nor replies are delivered
            assert client.get_heartbeat_health()["last_heartbeat_at"] is not None


def test_deribit_heartbeat_silence_means_dead(monkeypatch):
    monkeypatch.setattr("zen_websocket.config.DERIBIT_MIN_HEARTBEAT_INTERVAL", 0.01)
    rec = Recorder()

    def handler(conn, message):
        request = json.loads(message)
        return {"jsonrpc": "2.0", "id": request["id"], "result": "ok"}

    with MockWebSocketServer(handler=handler) as server:
        hb = {"type": "deribit", "interval": ms(50), "timeout": ms(50)}
        client = zw.connect(server.url, **{**BASE, "heartbeat_config": hb}, **rec.options())
        assert rec.wait("disconnect", timeout=3)
        assert ("disconnect", "heartbeat_timeout") in rec.events
        client.close()


def test_connect_callbacks_can_authenticate_before_restore():
    order = []

    def handler(conn, message):
        request = json.loads(message)
        order.append(request["method"])
        if request["method"] == "public/auth":
            return {"jsonrpc": "2.0", "id": request["id"], "result": {"access_token": "tok"}}
        return {"jsonrpc": "2.0", "id": request["id"], "result": request["params"]["channels"]}

    def authenticate(client):
        client.request("public/auth", {"grant_type": "client_credentials"}, timeout=2)

    rec = Recorder()
    with MockWebSocketServer(handler=handler) as server:
        options = {**BASE, **rec.options()}
        options["on_connect"] = [options["on_connect"], authenticate]
        with zw.connect(server.url, **options) as client:
            client.subscribe("user.orders.any.any.raw", wait=True, timeout=2)
            server.drop_connections()
            assert rec.wait("reconnect")
    assert order == ["public/auth", "private/subscribe", "public/auth", "private/subscribe"]

"""JSON-RPC requests, subscriptions in exchange dialects and rate limiting, end to end."""

from __future__ import annotations

import json
import random
import threading
import time

import pytest

import zen_websocket as zw
from tests.timeunit import ms, wait_until
from zen_websocket import telemetry
from zen_websocket.rate_limiter import binance_stream_preset
from zen_websocket.testing import BinanceEmulator, DeribitEmulator, MockWebSocketServer

BASE = {"heartbeat_config": None, "retry_delay": ms(20), "max_backoff": ms(100), "close_timeout": ms(300)}


@pytest.fixture
def deribit():
    # check_channels=False: these tests use made-up channel names ("a.b.c").
    with DeribitEmulator(
        min_heartbeat_interval=0.01, rate_limit_enabled=False, ignore_methods=["bench/never"], check_channels=False
    ) as server:
        yield server


def collect_errors():
    errors = []
    return errors, {"on_error": lambda client, exc: errors.append(exc)}


# -- requests -----------------------------------------------------------------


def test_request_returns_the_result_and_feeds_latency_metrics(deribit):
    with zw.connect(deribit.url, **BASE) as client:
        for _ in range(5):
            assert client.request("public/test")["version"]
        metrics = client.get_state_metrics()
        assert metrics["latency_p50"] is not None and 0 < metrics["latency_p50"] < 1
        assert metrics["latency_p99"] >= metrics["latency_p50"]
        assert metrics["pending_requests"] == 0
        with pytest.raises(TimeoutError):
            client.recv(ms(30))  # responses to request() are not queued


def test_error_response_raises_json_rpc_error_with_its_data(deribit):
    with zw.connect(deribit.url, **BASE) as client:
        with pytest.raises(zw.JsonRpcError) as info:
            client.request("public/no_such_method", {"x": 1})
    assert info.value.code == -32601
    assert info.value.method == "public/no_such_method"
    assert isinstance(info.value.request_id, int)
    assert info.value.message


def test_request_timeout_is_a_timeout_error_and_cleans_up(deribit):
    events = []
    telemetry.attach("rt", ("zen_websocket", "request", "timeout"), lambda e, m, md, c: events.append(md))
    try:
        with zw.connect(deribit.url, **BASE) as client:
            started = time.monotonic()
            with pytest.raises(zw.RequestTimeout) as info:
                client.request("bench/never", timeout=ms(60))
            assert ms(55) <= time.monotonic() - started < 1.0
            assert isinstance(info.value, TimeoutError)
            assert info.value.method == "bench/never"
            assert client.get_state_metrics()["pending_requests"] == 0
    finally:
        telemetry.detach("rt")
    assert events and events[0]["method"] == "bench/never"


def test_request_async_resolves_and_expires(deribit):
    with zw.connect(deribit.url, **BASE) as client:
        ok = client.request_async("public/test")
        never = client.request_async("bench/never", timeout=ms(60))
        assert ok.result(2)["version"]
        with pytest.raises(zw.RequestTimeout):
            never.result(2)
        assert client.get_state_metrics()["pending_requests"] == 0


def test_send_message_tracks_requests_and_still_delivers_the_response(deribit):
    with zw.connect(deribit.url, **BASE) as client:
        future = client.send_message({"jsonrpc": "2.0", "id": 987654, "method": "public/test", "params": {}})
        response = future.result(2)
        assert response["id"] == 987654 and "result" in response
        assert json.loads(client.recv(2)) == response


def test_responses_with_unknown_ids_and_malformed_json_reach_the_user_and_are_counted(deribit):
    with zw.connect(deribit.url, **BASE) as client:
        pending = client.request_async("bench/never", timeout=5)  # routing is on while it waits
        deribit.inject_message({"jsonrpc": "2.0", "id": 424242, "result": 1})
        deribit.inject_message('{"id": 5, broken')
        assert json.loads(client.recv(2)) == {"jsonrpc": "2.0", "id": 424242, "result": 1}
        assert client.recv(2) == '{"id": 5, broken'
        metrics = client.get_state_metrics()
        assert metrics["unmatched_responses"] == 1
        assert metrics["parse_errors"] == 1
        assert client.get_state() == "connected"
        assert not pending.done()


def test_error_without_code_is_raised_with_what_is_known():
    def handler(conn, message):
        request = json.loads(message)
        return {"jsonrpc": "2.0", "id": request["id"], "error": {"message": "nope"}}

    with MockWebSocketServer(handler=handler) as server:
        with zw.connect(server.url, **BASE) as client:
            with pytest.raises(zw.JsonRpcError) as info:
                client.request("x/y")
    assert info.value.code is None
    assert info.value.message == "nope"


def test_unencodable_params_raise_type_error_before_sending(server):
    with zw.connect(server.url, **BASE) as client:
        with pytest.raises(TypeError):
            client.request("public/test", {"when": object()})
        with pytest.raises(TypeError):
            client.request_async("public/test", {"x": float("inf")})
        client.send_message("marker")
        server.assert_message_sent("marker")
    assert server.received == ["marker"]


def test_thousand_concurrent_requests_from_eight_threads_answered_out_of_order():
    total = 1000
    lock = threading.Lock()
    waiting = []

    def handler(conn, message):
        request = json.loads(message)
        with lock:
            waiting.append(request)
            if len(waiting) < total:
                return None
            batch = waiting[:]
            waiting.clear()
        random.Random(7).shuffle(batch)
        for req in batch:
            conn.send({"jsonrpc": "2.0", "id": req["id"], "result": {"n": req["params"]["n"]}})
        return None

    with MockWebSocketServer(handler=handler) as server:
        with zw.connect(server.url, **BASE) as client:
            results: dict[int, object] = {}

            def worker(k):
                futures = {n: client.request_async("calc/echo", {"n": n}, timeout=20) for n in range(k, total, 8)}
                for n, future in futures.items():
                    results[n] = future.result(20)

            threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(25)
            assert len(results) == total
            assert all(results[n] == {"n": n} for n in range(total))
            assert client.get_state_metrics()["pending_requests"] == 0


# -- Deribit subscriptions ----------------------------------------------------


def test_deribit_subscribe_acknowledged_and_notifications_delivered(deribit):
    errors, opts = collect_errors()
    with zw.connect(deribit.url, **BASE, **opts) as client:
        client.subscribe(["deribit_price_index.btc_usd", "ticker.BTC-PERPETUAL.100ms"], wait=True, timeout=2)
        assert deribit.all_subscriptions == {"deribit_price_index.btc_usd", "ticker.BTC-PERPETUAL.100ms"}
        deribit.publish("deribit_price_index.btc_usd", {"price": 1})
        message = json.loads(client.recv(2))
        assert message["method"] == "subscription"
        assert message["params"]["data"] == {"price": 1}
        assert client.get_state_metrics()["subscriptions"] == 2
    assert errors == []
    assert deribit.requests[0]["method"] == "public/subscribe"


def test_deribit_unconfirmed_channels_are_reported_and_not_restored():
    errors, opts = collect_errors()
    sub_errors = []
    telemetry.attach("sub-err", ("zen_websocket", "subscription", "error"), lambda e, m, md, c: sub_errors.append(md))
    try:
        with DeribitEmulator(
            fail_channels=["book.BAD.100ms"], rate_limit_enabled=False, check_channels=False
        ) as server:
            with zw.connect(server.url, **BASE, **opts) as client:
                client.subscribe(["book.BAD.100ms", "book.GOOD.100ms"])
                assert wait_until(lambda: len(errors) == 1)
                assert isinstance(errors[0], zw.SubscriptionError)
                assert errors[0].channels == ["book.BAD.100ms"]
                assert client.subscriptions == ["book.GOOD.100ms"]
                with pytest.raises(zw.SubscriptionError) as info:
                    client.subscribe("book.BAD.100ms", wait=True, timeout=2)
                assert info.value.channels == ["book.BAD.100ms"]
    finally:
        telemetry.detach("sub-err")
    assert sub_errors and sub_errors[0]["channels"] == ["book.BAD.100ms"]


def test_private_channels_go_through_private_subscribe(deribit):
    errors, opts = collect_errors()
    with zw.connect(deribit.url, **BASE, **opts) as client:
        client.subscribe(["user.orders.any.any.raw", "ticker.BTC-PERPETUAL.100ms"])
        assert wait_until(lambda: len(errors) == 1)  # not authenticated: 13009
        methods = sorted(r["method"] for r in deribit.requests)
        assert methods == ["private/subscribe", "public/subscribe"]
        assert errors[0].channels == ["user.orders.any.any.raw"]
        client.request(
            "public/auth",
            {"grant_type": "client_credentials", "client_id": "test_client_id", "client_secret": "test_client_secret"},
        )
        client.subscribe("user.orders.any.any.raw", wait=True, timeout=2)
        assert "user.orders.any.any.raw" in deribit.all_subscriptions


def test_unsubscribe_removes_channels_from_the_restore_set(deribit):
    with zw.connect(deribit.url, **BASE) as client:
        client.subscribe(["a.b.c", "d.e.f"], wait=True, timeout=2)
        client.unsubscribe("a.b.c", wait=True, timeout=2)
        assert client.subscriptions == ["d.e.f"]
        assert deribit.all_subscriptions == {"d.e.f"}
        deribit.drop_connections()
        assert wait_until(lambda: deribit.connection_count == 2 and deribit.all_subscriptions == {"d.e.f"})
        subscribes = [r for r in deribit.requests if r["method"] == "public/subscribe"]
        assert subscribes[-1]["params"]["channels"] == ["d.e.f"]


def test_subscription_acks_are_not_delivered(deribit):
    with zw.connect(deribit.url, **BASE) as client:
        client.subscribe("x.y.z", wait=True, timeout=2)
        client.unsubscribe("x.y.z", wait=True, timeout=2)
        with pytest.raises(TimeoutError):
            client.recv(ms(50))


def test_restore_sends_subscriptions_after_reconnect_with_telemetry(deribit):
    restores = []
    telemetry.attach("restore", ("zen_websocket", "subscription", "restore"), lambda e, m, md, c: restores.append(m))
    try:
        with zw.connect(deribit.url, **BASE) as client:
            client.subscribe(["c1.x", "c2.x", "c3.x"], wait=True, timeout=2)
            deribit.simulate_disconnect(1001)
            assert wait_until(lambda: restores)
    finally:
        telemetry.detach("restore")
    assert restores[0]["count"] == 3 and restores[0]["missing"] == 0


# -- Binance dialect ----------------------------------------------------------


@pytest.fixture
def binance():
    with BinanceEmulator(ping_interval=None) as server:
        yield server


def test_binance_subscribe_unsubscribe_and_stream(binance):
    with zw.connect(binance.url + "/ws", subscription_format="binance", **BASE) as client:
        client.subscribe(["btcusdt@trade", "ethusdt@trade"], wait=True, timeout=2)
        control = binance.control_messages[0]
        assert control["method"] == "SUBSCRIBE" and control["params"] == ["btcusdt@trade", "ethusdt@trade"]
        assert isinstance(control["id"], int)
        binance.publish("btcusdt@trade", {"e": "trade", "t": 1})
        assert json.loads(client.recv(2))["t"] == 1
        client.unsubscribe("ethusdt@trade", wait=True, timeout=2)
        assert binance.all_subscriptions == {"btcusdt@trade"}
        with pytest.raises(TimeoutError):
            client.recv(ms(30))  # {"result": null, "id": N} acks are consumed


def test_binance_stream_limit_is_refused_before_sending(binance):
    with zw.connect(binance.url + "/ws", subscription_format="binance", **BASE) as client:
        with pytest.raises(zw.SubscriptionError):
            client.subscribe([f"s{i}usdt@trade" for i in range(1025)])
        assert binance.control_messages == []


def test_binance_restore_paces_control_messages_under_the_limit():
    with BinanceEmulator(ping_interval=None) as server:
        limiter = binance_stream_preset()
        with zw.connect(server.url + "/ws", subscription_format="binance", rate_limiter=limiter, **BASE) as client:
            streams = [f"s{i}usdt@trade" for i in range(600)]
            client.subscribe(streams, wait=True, timeout=5)
            server.drop_connections()
            assert wait_until(lambda: server.connection_count == 2 and len(server.all_subscriptions) == 600, 5)
            assert client.get_state() == "connected"
        assert server.violations == []


def test_binance_server_pings_are_answered():
    with BinanceEmulator(ping_interval=ms(30), pong_timeout=ms(100)) as server:
        with zw.connect(server.url + "/ws", subscription_format="binance", **BASE) as client:
            assert wait_until(lambda: server.pings_sent >= 3)
            assert client.get_state() == "connected"
        assert server.pong_timeouts == 0
        assert server.connection_count == 1


# -- rate limiting ------------------------------------------------------------


def test_raise_mode_raises_rate_limited_with_retry_after(server):
    limiter = zw.RateLimiter(rate=3, interval=1.0)
    rejects = []
    telemetry.attach("rl", ("zen_websocket", "rate_limit", "reject"), lambda e, m, md, c: rejects.append(m))
    try:
        with zw.connect(server.url, rate_limiter=limiter, rate_limit_mode="raise", **BASE) as client:
            for i in range(3):
                client.send_message(f"m{i}")
            with pytest.raises(zw.RateLimited) as info:
                client.send_message("too many")
            assert 0 < info.value.retry_after <= 1.0 / 3 + 0.05
    finally:
        telemetry.detach("rl")
    assert "too many" not in server.received
    assert len(rejects) == 1


def test_wait_mode_spaces_sends_to_the_budget(server):
    rate = 20
    limiter = zw.RateLimiter(rate=rate, interval=1.0, burst=1)
    with zw.connect(server.url, rate_limiter=limiter, **BASE) as client:
        started = time.monotonic()
        for i in range(6):
            client.send_message(f"m{i}")
        elapsed = time.monotonic() - started
    assert elapsed >= 5 / rate - 0.01


def test_heartbeats_count_against_the_limiter(server):
    limiter = zw.RateLimiter(rate=1000, interval=1.0)
    options = {**BASE, "heartbeat_config": {"type": "ping", "interval": ms(20)}}
    with zw.connect(server.url, rate_limiter=limiter, **options) as client:
        assert wait_until(lambda: client.get_heartbeat_health()["sent"] >= 3)
        sent = client.get_heartbeat_health()["sent"]
    assert limiter.status()["consumed"] >= sent


def test_requests_go_out_as_compact_json_rpc(server):
    with zw.connect(server.url, **BASE) as client:
        client.request_async("public/get_time")
        client.request_async("private/buy", {"instrument_name": "BTC-PERPETUAL", "amount": 10, "label": "é"})
        server.assert_message_sent(lambda m: "private/buy" in m, timeout=2)
    first, second = (json.loads(m) for m in server.received)
    assert first == {"jsonrpc": "2.0", "id": first["id"], "method": "public/get_time"}
    assert second["params"] == {"instrument_name": "BTC-PERPETUAL", "amount": 10, "label": "é"}
    assert second["id"] > first["id"] > 0
    assert server.received[0] == json.dumps(first, separators=(",", ":"))
